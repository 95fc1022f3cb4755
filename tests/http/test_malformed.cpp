// Responses no sane server sends, from an in-process raw socket server: each ends in its typed
// error carrying the URL — never a crash, a hang or a silently truncated body — and the broken
// connection never goes back to the pool.
#include <gtest/gtest.h>

#include "awith/http/session.hpp"
#include "http/http_test_support.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::raw_server;
using awith::test::run_http;
using awith::test::url_of;
using http::ClientResponse;
using http::ClientSession;

namespace {

// GETs `path` from a raw server sending `response`, reads the whole body, and returns the
// exception (null if none). The pool must hold no connection afterwards.
template <class Error>
void expect_error(std::string response, const std::string& expected_text, http::ParserLimits limits = {}) {
  run_http([&]() -> Task<void> {
    Server server = co_await raw_server(response);
    http::SessionOptions options{.timeout = {.total = 5s}, .limits = limits};
    ClientSession session(std::move(options));
    std::string url = url_of(server, "/bad");
    bool caught = false;
    try {
      co_await async_with(session.get(url), [](ClientResponse& r) -> Task<void> { co_await r.read(); });
    } catch (const Error& e) {
      caught = true;
      std::string what = e.what();
      EXPECT_NE(what.find(url), std::string::npos) << what;
      EXPECT_NE(what.find(expected_text), std::string::npos) << what;
    }
    EXPECT_TRUE(caught) << typeid(Error).name();
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
    server.close();
    co_await server.wait_closed();
  });
}

}  // namespace

TEST(HttpMalformed, GarbageStatusLine) {
  expect_error<http::MalformedResponseError>("SSH-2.0-OpenSSH_9.2\r\n", "HTTP/");
  expect_error<http::MalformedResponseError>("HTTP/1.1 abc OK\r\n\r\n", "invalid HTTP response");
  expect_error<http::MalformedResponseError>("HTTP/1.1 200 OK\r\nBad\x01Header: x\r\n\r\n", "invalid HTTP response");
}

TEST(HttpMalformed, OversizedHeaders) {
  expect_error<http::HeadersTooLargeError>("HTTP/1.1 200 OK\r\nX-Big: " + std::string(200000, 'a') + "\r\n\r\n",
                                           "header section");
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 500; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  expect_error<http::HeadersTooLargeError>(many + "\r\n", "header fields");
}

TEST(HttpMalformed, OversizedBody) {
  http::ParserLimits small{.max_header_size = 64 * 1024, .max_headers = 128, .max_body_size = 1000};
  expect_error<http::PayloadTooLargeError>("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'),
                                           "exceeds the limit", small);
  expect_error<http::PayloadTooLargeError>(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + std::string(0x800, 'y') + "\r\n0\r\n\r\n",
      "exceeds the limit", small);
}

TEST(HttpMalformed, BrokenBodies) {
  expect_error<http::ClientPayloadError>("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
                                         "invalid response body");
  expect_error<http::ClientPayloadError>("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", "before the response body");
  expect_error<http::ClientPayloadError>("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip",
                                         "gzip");
}

TEST(HttpMalformed, DisconnectBeforeTheResponse) {
  expect_error<http::ServerDisconnectedError>("", "without sending a response");
  expect_error<http::ServerDisconnectedError>("HTTP/1.1 200 OK\r\nContent-", "in the middle of the headers");
}

TEST(HttpMalformed, EndlessHeadersStopAtTheLimit) {
  run_http([&]() -> Task<void> {
    // A server that sends header lines forever: the limit ends it, the test does not hang.
    Server server = co_await start_server(
        [](StreamReader r, StreamWriter w) -> Task<void> {
          co_await r.readuntil("\r\n\r\n");
          w.write("HTTP/1.1 200 OK\r\n");
          try {
            for (int i = 0; i < 100000; ++i) {
              w.write("X-Endless: " + std::to_string(i) + "\r\n");
              co_await w.drain();
            }
          } catch (const std::exception&) {
            // The client hung up: expected.
          }
        },
        "127.0.0.1", 0);
    ClientSession session;
    EXPECT_THROW(co_await async_with(session.get(url_of(server)), [](ClientResponse&) -> Task<void> { co_return; }),
                 http::HeadersTooLargeError);
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
    server.close();
    server.abort_clients();
    co_await server.wait_closed();
  });
}

TEST(HttpMalformed, CloseDelimitedBodyIsReadToTheEndAndNotPooled) {
  run_http([&]() -> Task<void> {
    Server server = co_await raw_server("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close");
    ClientSession session;
    co_await async_with(session.get(url_of(server)), [](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(co_await r.text(), "until close");
    });
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
    server.close();
    co_await server.wait_closed();
  });
}

TEST(HttpMalformed, BytesAfterTheResponseMakeTheConnectionUnusable) {
  run_http([&]() -> Task<void> {
    Server server = co_await raw_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false);
    ClientSession session;
    co_await async_with(session.get(url_of(server)), [](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(co_await r.read(), "ok");
    });
    co_await sleep(10ms);
    co_await async_with(session.get(url_of(server)), [](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(co_await r.read(), "ok") << "the garbage was not taken for this response";
    });
    co_await session.close();
    server.close();
    server.abort_clients();
    co_await server.wait_closed();
  });
}

// A keep-alive connection the server closed while it was idle is never used for a request (found
// dead when taken from the pool, or retried once on a new connection if it dies on first use).
TEST(HttpMalformed, StaleKeepAliveConnectionIsRetried) {
  run_http([&]() -> Task<void> {
    Server server = co_await raw_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true);
    ClientSession session;
    for (int i = 0; i < 3; ++i) {
      co_await async_with(session.get(url_of(server)), [](ClientResponse& r) -> Task<void> {
        EXPECT_EQ(co_await r.read(), "ok");
      });
    }
    co_await session.close();
    server.close();
    co_await server.wait_closed();
  });
}

// Cancellation after every number of loop iterations, against an in-process server that sends a
// chunked body in pieces: the request is cut at each of its await points in turn (connecting,
// sending, the headers, every body piece, the exit), and each time the pool is left clean and the
// next request on the same session is answered correctly.
TEST(HttpMalformed, CancellationSweepByLoopIterations) {
  run_http(
      [&]() -> Task<void> {
        ConnectionHandler handler = [](StreamReader r, StreamWriter w) -> Task<void> {
          try {
            for (;;) {
              co_await r.readuntil("\r\n\r\n");
              w.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
              for (const char* piece : {"5\r\nhello\r\n", "1\r\n \r\n", "5\r\nworld\r\n", "0\r\n\r\n"}) {
                co_await w.drain();
                co_await sleep(0);
                w.write(piece);
              }
              co_await w.drain();
            }
          } catch (const std::exception&) {
            // The client went away (cancelled mid-request): this connection is done.
          }
        };
        Server server = co_await start_server(std::move(handler), "127.0.0.1", 0);
        ClientSession session;
        int cancelled = 0, completed = 0;
        // The loop polls for I/O only every 64 busy iterations, so a request spans hundreds of
        // them; the sweep ends once requests keep completing.
        int completed_in_a_row = 0;
        for (int k = 0; k < 2000 && completed_in_a_row < 20; ++k) {
          bool done = false;
          auto request = create_task([&]() -> Task<void> {
            co_await async_with(session.get(url_of(server)), [&](ClientResponse& r) -> Task<void> {
              EXPECT_EQ(co_await r.text(), "hello world");
            });
            done = true;
          });
          for (int i = 0; i < k; ++i) co_await sleep(0);
          request.cancel();
          try {
            co_await request;
          } catch (const CancelledError&) {
          }
          (done ? completed : cancelled) += 1;
          completed_in_a_row = done ? completed_in_a_row + 1 : 0;
          EXPECT_TRUE(awith::test::pool_is_clean(session)) << "k=" << k;
          co_await async_with(session.get(url_of(server)), [&](ClientResponse& r) -> Task<void> {
            EXPECT_EQ(co_await r.text(), "hello world") << "k=" << k;
          });
        }
        EXPECT_GT(cancelled, 5);
        EXPECT_EQ(completed_in_a_row, 20);
        co_await session.close();
        server.close();
        server.abort_clients();
        co_await server.wait_closed();
      },
      60s);
}
