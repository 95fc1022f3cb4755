// Responses no sane server sends, from an in-process raw socket server: each ends in its typed
// error carrying the URL — never a crash, a hang or a silently truncated body — and the broken
// connection never goes back to the pool.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "awith/http/session.hpp"
#include "http/http_test_support.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::raw_server;
using awith::test::header_value;
using awith::test::read_request;
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

namespace {
// A keep-alive server that closes a connection once it has been idle for `idle` (as nginx's
// keepalive_timeout does), runs each request it receives once, and counts the runs per
// X-Request-Id and the connections it accepted. Each answer's body is the request's id.
struct IdleClosingServer {
  explicit IdleClosingServer(Duration d) : idle(d) {}
  Duration idle;
  int connections = 0;
  std::map<std::string, int> executions;
  ConnectionHandler handler() {
    return [this](StreamReader r, StreamWriter w) -> Task<void> {
      ++connections;
      try {
        for (;;) {
          std::optional<std::string> head = co_await read_request(r, idle);
          if (!head) break;
          std::string id = header_value(*head, "X-Request-Id");
          ++executions[id];
          w.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(id.size()) + "\r\n\r\n" + id);
          co_await w.drain();
        }
      } catch (const std::exception&) {
        // The client went away.
      }
      w.close();
    };
  }
};

Task<std::string> post_with_id(ClientSession& session, const std::string& url, const std::string& id) {
  http::RequestOptions options;
  options.headers.add("X-Request-Id", id);
  options.data = "payload";
  co_return co_await async_with(session.post(url, std::move(options)),
                                [](ClientResponse& r) -> Task<std::string> { co_return co_await r.read(); });
}
}  // namespace

// A keep-alive connection the server closed while it sat idle in the pool is found dead when it
// is taken (urllib3's is_connection_dropped) and never carries a request. Without that check,
// each POST below would be written into a dead connection: the kernel accepts the bytes, so the
// POST may have left and is not re-sent (RetryStale::when_safe) — it would fail. The pool's
// dropped_idle counts exactly those catches; no POST fails, none is re-sent, none runs twice.
TEST(HttpMalformed, DeadIdleConnectionsAreCaughtBeforeAPostIsWrittenIntoThem) {
  run_http([&]() -> Task<void> {
    IdleClosingServer counting(200ms);
    Server server = co_await start_server(counting.handler(), "127.0.0.1", 0);
    const std::string url = url_of(server, "/run");
    ClientSession session;
    constexpr int kSpaced = 6;
    int failures = 0;
    for (int i = 0; i < kSpaced; ++i) {
      if (i > 0) co_await sleep(400ms);  // past the server's idle timeout: it closed the pooled connection
      std::string id = "spaced-" + std::to_string(i);
      try {
        EXPECT_EQ(co_await post_with_id(session, url, id), id);
      } catch (const http::ClientError& e) {
        ++failures;
        ADD_FAILURE() << e.what();
      }
    }
    EXPECT_EQ(failures, 0);
    http::PoolStatistics stats = session.statistics();
    EXPECT_EQ(stats.dropped_idle, std::uint64_t{kSpaced - 1}) << "POSTs that met a dead connection";
    EXPECT_EQ(stats.resent, 0u);
    EXPECT_EQ(stats.connections_opened, std::uint64_t{kSpaced});
    EXPECT_EQ(counting.connections, kSpaced);
    // Within the server's idle time the one connection serves them all: nothing to catch.
    for (int i = 0; i < 3; ++i) {
      co_await sleep(10ms);
      std::string id = "close-" + std::to_string(i);
      EXPECT_EQ(co_await post_with_id(session, url, id), id);
    }
    stats = session.statistics();
    EXPECT_EQ(stats.dropped_idle, std::uint64_t{kSpaced - 1});
    EXPECT_EQ(stats.connections_opened, std::uint64_t{kSpaced});
    EXPECT_EQ(counting.executions.size(), std::size_t{kSpaced + 3});
    for (auto& [id, runs] : counting.executions) EXPECT_EQ(runs, 1) << id;
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
        // A request spans many loop iterations (the loop polls I/O between them); the sweep ends
        // once requests keep completing.
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

namespace {
// A server that answers the first request on each connection and, on the second, reads the whole
// request, counts it and closes without answering: it ran the request and then died. Counts the
// requests to /run it received.
struct DyingAfterOneServer {
  int executions = 0;
  ConnectionHandler handler() {
    return [this](StreamReader r, StreamWriter w) -> Task<void> {
      try {
        for (int on_this_connection = 0;; ++on_this_connection) {
          std::string head = co_await r.readuntil("\r\n\r\n");
          std::size_t length = 0;
          if (auto at = head.find("Content-Length: "); at != std::string::npos)
            length = std::stoul(head.substr(at + 16));
          if (length > 0) co_await r.readexactly(static_cast<std::ptrdiff_t>(length));
          if (head.find(" /run ") != std::string::npos) ++executions;
          if (on_this_connection == 1) break;
          w.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
          co_await w.drain();
        }
      } catch (const std::exception&) {
      }
      w.close();
    };
  }
};

struct RetryCase {
  RetryCase(std::string m, std::optional<http::RetryStale> r, bool s, int e)
      : method(std::move(m)), rule(r), succeeds(s), executions(e) {}
  std::string method;
  std::optional<http::RetryStale> rule;  // nullopt: the session's default
  bool succeeds;                         // answered after one retry on a new connection
  int executions;                        // how many times the server ran it
};
}  // namespace

// A request the server received and then died on is sent again only where that is safe: an
// idempotent method, or with the application's consent (RetryStale::always); a POST is never run
// twice by default.
TEST(HttpMalformed, ARequestTheServerMayHaveRunIsRetriedOnlyWhenThatIsSafe) {
  using http::RetryStale;
  const std::vector<RetryCase> cases = {
      RetryCase("POST", std::nullopt, false, 1),          RetryCase("PATCH", std::nullopt, false, 1),
      RetryCase("GET", std::nullopt, true, 2),            RetryCase("PUT", std::nullopt, true, 2),
      RetryCase("DELETE", std::nullopt, true, 2),         RetryCase("POST", RetryStale::always, true, 2),
      RetryCase("POST", RetryStale::unsent_only, false, 1), RetryCase("GET", RetryStale::never, false, 1),
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.method + (c.rule ? " with an explicit rule" : " with the default rule"));
    run_http([&]() -> Task<void> {
      DyingAfterOneServer counting;
      Server server = co_await start_server(counting.handler(), "127.0.0.1", 0);
      ClientSession session;
      co_await async_with(session.get(url_of(server, "/warm")), [](ClientResponse& r) -> Task<void> {
        EXPECT_EQ(co_await r.read(), "ok");
      });
      http::RequestOptions options;
      options.data = "payload";
      options.retry_stale = c.rule;
      bool answered = false;
      try {
        co_await async_with(session.request(c.method, url_of(server, "/run"), std::move(options)),
                            [&](ClientResponse& r) -> Task<void> {
                              EXPECT_EQ(co_await r.read(), "ok");
                              answered = true;
                            });
      } catch (const http::ClientConnectionError& e) {
        EXPECT_NE(std::string(e.what()).find("/run"), std::string::npos) << e.what();
      }
      EXPECT_EQ(answered, c.succeeds);
      EXPECT_EQ(counting.executions, c.executions);
      co_await session.close();
      server.close();
      co_await server.wait_closed();
    });
  }
}

// read(), text() and json() buffer the whole body: past max_read_size (per session, per request)
// they raise PayloadTooLargeError naming the limit, whether the length is declared or chunked;
// content() streams the same body without that limit.
TEST(HttpMalformed, BufferedReadsStopAtMaxReadSizeStreamingDoesNot) {
  const std::string body(3000, 'x');
  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) chunked += "3e8\r\n" + std::string(1000, 'x') + "\r\n";
  chunked += "0\r\n\r\n";
  for (const std::string& response :
       {"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + body, chunked}) {
    run_http([&]() -> Task<void> {
      Server server = co_await raw_server(response, false);
      http::SessionOptions options;
      options.max_read_size = 2000;
      ClientSession session(std::move(options));
      bool too_large = false;
      try {
        co_await async_with(session.get(url_of(server, "/big")), [](ClientResponse& r) -> Task<void> {
          (void)co_await r.read();
        });
      } catch (const http::PayloadTooLargeError& e) {
        too_large = true;
        std::string what = e.what();
        EXPECT_NE(what.find("max_read_size (2000 bytes)"), std::string::npos) << what;
        EXPECT_NE(what.find("/big"), std::string::npos) << what;
      }
      EXPECT_TRUE(too_large);
      http::RequestOptions larger;
      larger.max_read_size = 4000;
      co_await async_with(session.get(url_of(server, "/big"), std::move(larger)), [&](ClientResponse& r) -> Task<void> {
        EXPECT_EQ(co_await r.read(), body);
      });
      co_await async_with(session.get(url_of(server, "/big")), [&](ClientResponse& r) -> Task<void> {
        std::string streamed;
        auto chunks = r.content().iter_chunked(512);
        while (auto chunk = co_await chunks.next()) streamed += *chunk;
        EXPECT_EQ(streamed, body);
      });
      co_await session.close();
      server.close();
      co_await server.wait_closed();
    });
  }
}
