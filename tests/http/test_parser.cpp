// The response parser and URLs, without sockets: framing (Content-Length, chunked at every split
// point, close-delimited, HEAD/204/304, interim 1xx), limits and decoding, each with its typed error.
#include <gtest/gtest.h>
#include <zlib.h>

#include "awith/http/errors.hpp"
#include "awith/http/parser.hpp"
#include "awith/http/url.hpp"

using namespace awith::http;

namespace {

// Feeds `wire` in pieces of `step` bytes; returns how many bytes the parser consumed in all.
std::size_t feed_all(ResponseParser& p, std::string_view wire, std::size_t step = 1 << 20) {
  std::size_t total = 0;
  while (total < wire.size() && !p.failed() && !p.message_complete()) {
    std::size_t n = p.feed(wire.substr(total, step));
    total += n;
    if (n == 0) break;
  }
  return total;
}

std::string compress(std::string_view data, int window_bits) {
  z_stream z{};
  deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

TEST(ResponseParser, ContentLengthBodyAndKeepAlive) {
  ResponseParser p;
  std::string wire = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello";
  EXPECT_EQ(feed_all(p, wire), wire.size());
  EXPECT_TRUE(p.message_complete());
  EXPECT_EQ(p.status(), 200);
  EXPECT_EQ(p.reason(), "OK");
  EXPECT_EQ(p.body(), "hello");
  EXPECT_TRUE(p.keep_alive());
  auto all = p.headers().getall("X-A");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], "1");
  EXPECT_EQ(all[1], "2");
  EXPECT_EQ(*p.headers().get("content-type"), "text/plain");
}

TEST(ResponseParser, ChunkedSplitAtEveryByte) {
  std::string wire = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
  for (std::size_t step = 1; step <= wire.size(); ++step) {
    ResponseParser p;
    EXPECT_EQ(feed_all(p, wire, step), wire.size()) << step;
    EXPECT_TRUE(p.message_complete()) << step;
    EXPECT_EQ(p.body(), "hello, world") << step;
    EXPECT_TRUE(p.keep_alive());
  }
}

TEST(ResponseParser, CloseDelimitedBodyEndsAtEof) {
  ResponseParser p;
  std::string wire = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";
  feed_all(p, wire);
  EXPECT_TRUE(p.headers_complete());
  EXPECT_FALSE(p.message_complete());
  p.feed_eof();
  EXPECT_FALSE(p.failed());
  EXPECT_TRUE(p.message_complete());
  EXPECT_EQ(p.body(), "until the end");
  EXPECT_FALSE(p.keep_alive());
}

TEST(ResponseParser, NoBodyForHead204And304) {
  {
    ResponseParser p;
    p.reset(true);
    std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    EXPECT_EQ(feed_all(p, wire), wire.size());
    EXPECT_TRUE(p.message_complete());
    EXPECT_TRUE(p.keep_alive());
  }
  for (const char* status : {"204 No Content", "304 Not Modified"}) {
    ResponseParser p;
    std::string wire = std::string("HTTP/1.1 ") + status + "\r\nContent-Length: 99\r\n\r\n";
    EXPECT_EQ(feed_all(p, wire), wire.size());
    EXPECT_TRUE(p.message_complete()) << status;
    EXPECT_TRUE(p.body().empty());
  }
}

TEST(ResponseParser, InterimResponsesAreSkipped) {
  ResponseParser p;
  std::string wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  EXPECT_EQ(feed_all(p, wire), wire.size());
  EXPECT_EQ(p.status(), 201);
  EXPECT_FALSE(p.headers().contains("Link"));
  EXPECT_EQ(p.body(), "ok");
}

TEST(ResponseParser, StopsAtTheEndOfTheMessage) {
  ResponseParser p;
  std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  std::string wire = first + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  EXPECT_EQ(p.feed(wire), first.size());
  EXPECT_TRUE(p.message_complete());
  EXPECT_EQ(p.feed(wire.substr(first.size())), 0u);
}

TEST(ResponseParser, MalformedInputIsATypedError) {
  for (std::string wire : {std::string("HTTX/1.1 200 OK\r\n\r\n"), std::string("HTTP/1.1 2x0 OK\r\n\r\n"),
                           std::string("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"),
                           std::string("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n"),
                           std::string("\x16\x03\x01\x02\x00", 5)}) {
    ResponseParser p;
    feed_all(p, wire);
    EXPECT_TRUE(p.failed()) << wire;
    EXPECT_EQ(p.error(), ParseError::malformed) << wire << " -> " << p.error_message();
  }
  ResponseParser p;
  feed_all(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
  EXPECT_EQ(p.error(), ParseError::payload) << p.error_message();
}

TEST(ResponseParser, TruncationIsATypedError) {
  ResponseParser p;
  feed_all(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  p.feed_eof();
  EXPECT_EQ(p.error(), ParseError::payload);
  ResponseParser q;
  feed_all(q, "HTTP/1.1 200 OK\r\nContent-Le");
  q.feed_eof();
  EXPECT_EQ(q.error(), ParseError::disconnected);
  ResponseParser r;
  r.feed_eof();
  EXPECT_EQ(r.error(), ParseError::disconnected);
}

TEST(ResponseParser, Limits) {
  ResponseParser p(ParserLimits{.max_header_size = 100, .max_headers = 128, .max_body_size = 10});
  feed_all(p, "HTTP/1.1 200 OK\r\nX-Big: " + std::string(200, 'a') + "\r\n\r\n");
  EXPECT_EQ(p.error(), ParseError::headers_too_large);

  ResponseParser many(ParserLimits{.max_header_size = 1 << 20, .max_headers = 3, .max_body_size = 10});
  feed_all(many, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
  EXPECT_EQ(many.error(), ParseError::headers_too_large);

  ResponseParser declared(ParserLimits{.max_header_size = 1024, .max_headers = 128, .max_body_size = 10});
  feed_all(declared, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n");
  EXPECT_EQ(declared.error(), ParseError::payload_too_large);

  ResponseParser chunked(ParserLimits{.max_header_size = 1024, .max_headers = 128, .max_body_size = 10});
  feed_all(chunked, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n");
  EXPECT_EQ(chunked.error(), ParseError::payload_too_large);

  // A compressed body is limited by its decoded size (a gzip bomb stops at the limit).
  std::string bomb = compress(std::string(100000, 'z'), 16 + MAX_WBITS);
  ResponseParser gz(ParserLimits{.max_header_size = 1024, .max_headers = 128, .max_body_size = 5000});
  feed_all(gz, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(bomb.size()) +
                   "\r\n\r\n" + bomb);
  EXPECT_EQ(gz.error(), ParseError::payload_too_large);
}

TEST(ResponseParser, GzipAndDeflateDecoding) {
  std::string text = "compressible text, compressible text, compressible text";
  struct Case {
    const char* encoding;
    int bits;
  };
  for (Case c : {Case{"gzip", 16 + MAX_WBITS}, Case{"deflate", MAX_WBITS}, Case{"deflate", -MAX_WBITS}}) {
    std::string body = compress(text, c.bits);
    std::string wire = std::string("HTTP/1.1 200 OK\r\nContent-Encoding: ") + c.encoding +
                       "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    for (std::size_t step : {std::size_t(1), std::size_t(7), wire.size()}) {
      ResponseParser p;
      feed_all(p, wire, step);
      EXPECT_TRUE(p.message_complete()) << c.encoding << c.bits << " " << p.error_message();
      EXPECT_EQ(p.body(), text);
    }
  }
  std::string gz = compress(text, 16 + MAX_WBITS);
  ResponseParser truncated;
  std::string cut = gz.substr(0, gz.size() - 6);
  feed_all(truncated, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(cut.size()) +
                          "\r\n\r\n" + cut);
  EXPECT_EQ(truncated.error(), ParseError::payload);
  ResponseParser corrupt;
  feed_all(corrupt, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip");
  EXPECT_EQ(corrupt.error(), ParseError::payload);
}

TEST(URL, ParseJoinAndParams) {
  URL u = URL::parse("HTTP://Example.ORG:8080/a/b/c?x=1");
  EXPECT_EQ(u.scheme(), "http");
  EXPECT_EQ(u.host(), "example.org");
  EXPECT_EQ(u.port(), 8080);
  EXPECT_EQ(u.target(), "/a/b/c?x=1");
  EXPECT_EQ(u.host_header(), "example.org:8080");
  EXPECT_EQ(u.join("d").str(), "http://example.org:8080/a/b/d");
  EXPECT_EQ(u.join("../d?y=2").str(), "http://example.org:8080/a/d?y=2");
  EXPECT_EQ(u.join("/root").str(), "http://example.org:8080/root");
  EXPECT_EQ(u.join("//other.net/p").str(), "http://other.net/p");
  EXPECT_EQ(u.join("https://secure.net/").str(), "https://secure.net/");
  EXPECT_EQ(u.join("?q=1").str(), "http://example.org:8080/a/b/c?q=1");
  EXPECT_EQ(URL::parse("http://h/p?a=1").with_params({{"q", "a b&c=d"}, {"é", "/"}}).target(),
            "/p?a=1&q=a+b%26c%3Dd&%C3%A9=%2F");
  EXPECT_EQ(URL::parse("http://[::1]:81/").host_header(), "[::1]:81");
  EXPECT_EQ(URL::parse("https://h").port(), 443);
  EXPECT_EQ(URL::parse("http://h/a b").target(), "/a%20b");
  EXPECT_THROW(URL::parse("ftp://h/"), InvalidURL);
  EXPECT_THROW(URL::parse("/relative"), InvalidURL);
  EXPECT_THROW(URL::parse("http://"), InvalidURL);
  EXPECT_THROW(URL::parse("http://user:pw@h/"), InvalidURL);
}
