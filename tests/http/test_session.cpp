// ClientSession against a real aiohttp server (servers/aiohttp_server.py): requests and bodies,
// headers, redirects, streaming, JSON, errors, timeouts per phase, the pool's keep-alive and its
// consistency under cancellation at every await point.
//
// (Request options are built before the co_await that uses them: g++ 12 destroys an aggregate
// built inside a throwing co_await expression twice — docs/design.md, toolchain notes.)
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "awith/http/session.hpp"
#include "http/http_test_support.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::pool_is_clean;
using awith::test::run_http;
using http::ClientResponse;
using http::ClientSession;

namespace {
std::string base() { return "http://127.0.0.1:" + std::to_string(awith::test::aiohttp_port()); }

Task<nlohmann::json> get_json(ClientSession& session, std::string url, http::RequestOptions options) {
  co_return co_await async_with(session.request("GET", std::move(url), std::move(options)),
                                [](ClientResponse& r) -> Task<nlohmann::json> { co_return co_await r.json(); });
}
Task<nlohmann::json> get_json(ClientSession& session, std::string url) {
  return get_json(session, std::move(url), http::RequestOptions());
}
}  // namespace

TEST(HttpSession, GetJsonLikeHttpbin) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    http::RequestOptions options{.params = {{"q", "a b&c"}}};
    co_await async_with(session.get(base() + "/get", options), [&](ClientResponse& resp) -> Task<void> {
      EXPECT_EQ(resp.status(), 200);
      EXPECT_EQ(resp.reason(), "OK");
      EXPECT_EQ(resp.content_type(), "application/json");
      EXPECT_EQ(resp.charset().value_or(""), "utf-8");
      EXPECT_TRUE(resp.headers().contains("content-TYPE"));
      nlohmann::json data = co_await resp.json();
      std::vector<std::string> keys;
      for (auto& [k, v] : data.items()) keys.push_back(k);
      EXPECT_EQ(keys, (std::vector<std::string>{"args", "headers", "origin", "url"}));
      EXPECT_EQ(data["args"]["q"], "a b&c");
      EXPECT_EQ(data["headers"]["Accept-Encoding"], "gzip, deflate");
      EXPECT_EQ(data["headers"]["Host"], "127.0.0.1:" + std::to_string(awith::test::aiohttp_port()));
      EXPECT_EQ(data["origin"], "127.0.0.1");
      EXPECT_EQ(resp.url().query(), "q=a+b%26c");
    });
    co_await session.close();
    EXPECT_EQ(session.open_connections(), 0u);
  });
}

TEST(HttpSession, KeepAliveReusesOneConnection) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    std::set<int> peer_ports;
    for (int i = 0; i < 5; ++i) {
      auto data = co_await get_json(session, base() + "/echo");
      peer_ports.insert(data["peer_port"].get<int>());
      EXPECT_EQ(session.open_connections(), 1u);
      EXPECT_EQ(session.idle_connections(), 1u);
    }
    EXPECT_EQ(peer_ports.size(), 1u);
    co_await session.close();
    EXPECT_EQ(session.open_connections(), 0u);
    bool refused = false;
    try {
      co_await get_json(session, base() + "/echo");
    } catch (const http::ClientConnectionError&) {
      refused = true;
    }
    EXPECT_TRUE(refused) << "a closed session refuses requests";
  });
}

TEST(HttpSession, IdleConnectionsCloseAfterTheKeepAliveTimeout) {
  base();
  run_http([&]() -> Task<void> {
    http::SessionOptions options{.connector = {.keepalive_timeout = 100ms}};
    ClientSession session(std::move(options));
    co_await get_json(session, base() + "/echo");
    co_await sleep(50ms);
    co_await get_json(session, base() + "/echo");  // reused: the idle clock restarts
    EXPECT_EQ(session.open_connections(), 1u);
    co_await sleep(60ms);
    EXPECT_EQ(session.open_connections(), 1u);
    co_await sleep(150ms);
    EXPECT_EQ(session.open_connections(), 0u) << "closed by the keep-alive sweep, without further use";
    co_await session.close();
  });
}

TEST(HttpSession, MethodsAndBodies) {
  base();
  run_http([&]() -> Task<void> {
    http::SessionOptions options{.base_url = base() + "/ignored/",
                                 .headers = {{"X-Session", "s"}, {"X-Both", "session"}}};
    ClientSession session(std::move(options));
    auto echo = [&](std::string method, http::RequestOptions options) -> Task<nlohmann::json> {
      co_return co_await async_with(session.request(std::move(method), "/echo", std::move(options)),
                                    [](ClientResponse& r) -> Task<nlohmann::json> { co_return co_await r.json(); });
    };
    http::RequestOptions json_body{.headers = {{"X-Both", "request"}}, .json = nlohmann::json{{"k", 1}}};
    auto j = co_await echo("POST", json_body);
    EXPECT_EQ(j["method"], "POST");
    EXPECT_EQ(j["body"], R"({"k":1})");
    EXPECT_EQ(j["headers"]["Content-Type"], "application/json");
    EXPECT_EQ(j["headers"]["X-Session"], "s");
    EXPECT_EQ(j["headers"]["X-Both"], "request");
    EXPECT_EQ(j["headers"]["User-Agent"], "awith-http/0.1");

    http::RequestOptions form{.form = http::Params{{"name", "a b"}, {"x", "1&2"}}};
    j = co_await echo("PUT", form);
    EXPECT_EQ(j["method"], "PUT");
    EXPECT_EQ(j["body"], "name=a+b&x=1%262");
    EXPECT_EQ(j["headers"]["Content-Type"], "application/x-www-form-urlencoded");

    http::RequestOptions bytes{.data = std::string("raw\0bytes", 9)};
    j = co_await echo("PATCH", bytes);
    EXPECT_EQ(j["body"], std::string("raw\0bytes", 9));
    EXPECT_EQ(j["headers"]["Content-Length"], "9");

    j = co_await echo("DELETE", http::RequestOptions());
    EXPECT_EQ(j["method"], "DELETE");
    EXPECT_EQ(j["body"], "");

    co_await async_with(session.head(base() + "/get"), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 200);
      EXPECT_EQ(co_await r.read(), "");
    });
    EXPECT_EQ(session.idle_connections(), 1u) << "a HEAD response leaves its connection reusable";

    http::RequestOptions two_bodies{.data = "x", .json = nlohmann::json(1)};
    EXPECT_THROW(co_await echo("POST", two_bodies), std::invalid_argument);
    http::RequestOptions injected{.headers = {{"X-Evil", "a\r\nInjected: yes"}}};
    EXPECT_THROW(co_await echo("GET", injected), std::invalid_argument);
    co_await session.close();
  });
}

TEST(HttpSession, HeadersAreCaseInsensitiveAndMultiValued) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    co_await async_with(session.get(base() + "/cookies"), [&](ClientResponse& r) -> Task<void> {
      auto cookies = r.headers().getall("set-cookie");
      EXPECT_EQ(cookies, (std::vector<std::string_view>{"a=1", "b=2"}));
      EXPECT_EQ(r.headers().get("X-MIXED-CASE").value_or(""), "yes");
      EXPECT_FALSE(r.headers().get("absent"));
      EXPECT_EQ(co_await r.text(), "cookies");
    });
    co_await session.close();
  });
}

TEST(HttpSession, RedirectMethodAndBodyRules) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    struct Case {
      int status;
      std::string method, body;
    };
    for (const Case& c : {Case{301, "GET", ""}, Case{302, "GET", ""}, Case{303, "GET", ""}, Case{307, "POST", "payload"},
                          Case{308, "POST", "payload"}}) {
      http::RequestOptions options{.params = {{"status", std::to_string(c.status)}}, .data = "payload"};
      co_await async_with(session.post(base() + "/redirect", options), [&](ClientResponse& r) -> Task<void> {
        auto j = co_await r.json();
        EXPECT_EQ(j["method"], c.method) << c.status;
        EXPECT_EQ(j["body"], c.body) << c.status;
        EXPECT_EQ(r.url().path(), "/echo");
        EXPECT_EQ(r.history().size(), 1u);
        if (r.history().size() == 1) {
          EXPECT_EQ(r.history()[0].status(), c.status);
          EXPECT_EQ(r.history()[0].url().path(), "/redirect");
        }
      });
    }
    // 303 turns PUT into GET too; HEAD stays HEAD.
    http::RequestOptions put303{.params = {{"status", "303"}}, .data = "x"};
    auto j = co_await async_with(session.put(base() + "/redirect", put303),
                                 [](ClientResponse& r) -> Task<nlohmann::json> { co_return co_await r.json(); });
    EXPECT_EQ(j["method"], "GET");
    EXPECT_TRUE(pool_is_clean(session));
    co_await session.close();
  });
}

TEST(HttpSession, RedirectChainsAndLimits) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    http::RequestOptions three{.params = {{"times", "3"}}};
    co_await async_with(session.get(base() + "/redirect", three), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 200);
      EXPECT_EQ(r.history().size(), 3u);
      co_await r.read();
    });
    http::RequestOptions limited{.params = {{"times", "3"}}, .max_redirects = 2};
    bool raised = false;
    try {
      co_await async_with(session.get(base() + "/redirect", limited), [](ClientResponse&) -> Task<void> { co_return; });
    } catch (const http::TooManyRedirects& e) {
      raised = true;
      EXPECT_NE(e.url().find("/redirect"), std::string::npos);
    }
    EXPECT_TRUE(raised);
    http::RequestOptions none_allowed{.max_redirects = 0};
    EXPECT_THROW(co_await async_with(session.get(base() + "/redirect", none_allowed),
                                     [](ClientResponse&) -> Task<void> { co_return; }),
                 http::TooManyRedirects);
    http::RequestOptions manual{.allow_redirects = false};
    co_await async_with(session.get(base() + "/redirect", manual), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 302);
      EXPECT_EQ(r.headers().get("Location").value_or(""), "/echo");
      EXPECT_TRUE(r.history().empty());
      co_return;
    });
    EXPECT_TRUE(pool_is_clean(session));
    co_await session.close();
  });
}

TEST(HttpSession, RaiseForStatus) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    co_await async_with(session.get(base() + "/status/404"), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 404);
      EXPECT_FALSE(r.ok());
      try {
        r.raise_for_status();
        ADD_FAILURE() << "no exception";
      } catch (const http::ClientResponseError& e) {
        EXPECT_EQ(e.status(), 404);
        EXPECT_EQ(e.message(), "Not Found");
        EXPECT_EQ(e.url(), base() + "/status/404");
      }
      co_return;
    });
    http::SessionOptions strict_options{.raise_for_status = true};
    ClientSession strict(std::move(strict_options));
    bool body_ran = false;
    int status = 0;
    try {
      co_await async_with(strict.get(base() + "/status/503"), [&](ClientResponse&) -> Task<void> {
        body_ran = true;
        co_return;
      });
    } catch (const http::ClientResponseError& e) {
      status = e.status();
    }
    EXPECT_FALSE(body_ran);
    EXPECT_EQ(status, 503);
    EXPECT_TRUE(pool_is_clean(strict));
    co_await strict.close();
    co_await session.close();
  });
}

TEST(HttpSession, StreamingChunkedBody) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    http::RequestOptions lines{.params = {{"lines", "5"}, {"delay", "5"}}};
    co_await async_with(session.get(base() + "/chunked", lines), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.headers().get("Transfer-Encoding").value_or(""), "chunked");
      auto content = r.content();
      for (int i = 0; i < 5; ++i) EXPECT_EQ(co_await content.readline(), "line " + std::to_string(i) + "\n");
      EXPECT_EQ(co_await content.readline(), "");
      EXPECT_TRUE(content.at_eof());
    });
    EXPECT_EQ(session.idle_connections(), 1u);
    co_await async_with(session.get(base() + "/chunked", lines), [&](ClientResponse& r) -> Task<void> {
      std::string all;
      auto it = r.content().iter_chunked(4);
      while (auto chunk = co_await it.next()) {
        EXPECT_LE(chunk->size(), 4u);
        all += *chunk;
      }
      EXPECT_EQ(all, "line 0\nline 1\nline 2\nline 3\nline 4\n");
    });
    co_await async_with(session.get(base() + "/chunked", lines), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(co_await r.content().readexactly(7), "line 0\n");
      bool incomplete = false;
      try {
        co_await r.content().readexactly(1000);
      } catch (const IncompleteReadError& e) {
        incomplete = true;
        EXPECT_EQ(e.partial().size(), 28u);
      }
      EXPECT_TRUE(incomplete);
    });
    EXPECT_TRUE(pool_is_clean(session));
    co_await session.close();
  });
}

TEST(HttpSession, DeflateBodies) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    auto wrapped = co_await get_json(session, base() + "/deflate");
    EXPECT_EQ(wrapped["compressed"], "deflate");
    EXPECT_EQ(wrapped["raw"], false);
    http::RequestOptions raw{.params = {{"raw", "1"}}};
    auto bare = co_await get_json(session, base() + "/deflate", raw);
    EXPECT_EQ(bare["raw"], true);
    co_await session.close();
  });
}

TEST(HttpSession, JsonErrors) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    bool invalid = false, wrong_type = false;
    try {
      co_await get_json(session, base() + "/not_json");
    } catch (const http::InvalidJSONError& e) {
      invalid = true;
      EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos);
    }
    http::RequestOptions html{.params = {{"type", "text/html"}}};
    try {
      co_await get_json(session, base() + "/not_json", html);
    } catch (const http::ContentTypeError& e) {
      wrong_type = true;
      EXPECT_NE(std::string(e.what()).find("text/html"), std::string::npos);
    }
    EXPECT_TRUE(invalid);
    EXPECT_TRUE(wrong_type);
    EXPECT_TRUE(pool_is_clean(session));
    co_await session.close();
  });
}

TEST(HttpSession, ConnectErrorsCarryTheUrl) {
  run_http([&]() -> Task<void> {
    ClientSession session;
    std::uint16_t port = awith::test::free_port();  // nothing listens there
    std::string url = "http://127.0.0.1:" + std::to_string(port) + "/x";
    int err = 0;
    try {
      co_await get_json(session, url);
    } catch (const http::ClientConnectorError& e) {
      err = e.errno_value();
      EXPECT_NE(std::string(e.what()).find(url), std::string::npos);
    }
    EXPECT_EQ(err, ECONNREFUSED);
    EXPECT_EQ(session.open_connections(), 0u);
    EXPECT_THROW(co_await get_json(session, "ftp://127.0.0.1/"), http::InvalidURL);
    EXPECT_THROW(co_await get_json(session, "not a url"), http::InvalidURL);
    co_await session.close();
  });
}

TEST(HttpSession, MidBodyDisconnectIsAPayloadErrorAndClosesTheConnection) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    bool payload_error = false;
    try {
      co_await async_with(session.get(base() + "/disconnect_mid_body"), [&](ClientResponse& r) -> Task<void> {
        co_await r.read();
      });
    } catch (const http::ClientPayloadError& e) {
      payload_error = true;
      EXPECT_NE(std::string(e.what()).find("/disconnect_mid_body"), std::string::npos);
    }
    EXPECT_TRUE(payload_error);
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
  });
}

TEST(HttpSession, UnreadBodyClosesTheConnectionReadBodyKeepsIt) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    http::RequestOptions drip{.params = {{"chunks", "5"}, {"delay", "20"}}};
    co_await async_with(session.get(base() + "/drip", drip), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(co_await r.content().read(3), "pie");
    });
    EXPECT_EQ(session.open_connections(), 0u) << "a partly read body is never pooled";
    co_await async_with(session.get(base() + "/drip", drip), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ((co_await r.read()).size(), 50u);
    });
    EXPECT_EQ(session.open_connections(), 1u);
    EXPECT_EQ(session.idle_connections(), 1u);
    co_await session.close();
  });
}

TEST(HttpSession, TimeoutSockReadWhileWaitingForHeaders) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session(http::ClientTimeout{.sock_read = 100ms});
    auto start = EventLoop::running().time();
    http::TimeoutPhase phase = http::TimeoutPhase::total;
    bool raised = false;
    try {
      co_await get_json(session, base() + "/slow_headers?delay=3000");
    } catch (const http::ClientTimeoutError& e) {
      raised = true;
      phase = e.phase();
      EXPECT_NE(std::string(e.what()).find("sock_read"), std::string::npos);
    }
    EXPECT_TRUE(raised);
    EXPECT_EQ(phase, http::TimeoutPhase::sock_read);
    EXPECT_LT(EventLoop::running().time() - start, 2s);
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
  });
}

TEST(HttpSession, TimeoutTotalCoversReadingTheBody) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session(http::ClientTimeout{.total = 300ms});
    http::TimeoutPhase phase = http::TimeoutPhase::sock_read;
    bool headers_arrived = false;
    try {
      co_await async_with(session.get(base() + "/slow_body?delay=3000"), [&](ClientResponse& r) -> Task<void> {
        headers_arrived = true;
        co_await r.read();
      });
    } catch (const http::ClientTimeoutError& e) {
      phase = e.phase();
    }
    EXPECT_TRUE(headers_arrived);
    EXPECT_EQ(phase, http::TimeoutPhase::total);
    EXPECT_EQ(session.open_connections(), 0u);
    // A per-request timeout replaces the session's.
    http::RequestOptions patient{.timeout = http::ClientTimeout{.total = 5s}};
    co_await async_with(session.get(base() + "/slow_body?delay=400", patient), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(co_await r.read(), "half-end");
    });
    co_await session.close();
  });
}

TEST(HttpSession, TimeoutConnectWhileWaitingForAPoolSlot) {
  base();
  run_http([&]() -> Task<void> {
    http::SessionOptions one_slot{.timeout = {.connect = 150ms}, .connector = {.limit = 1}};
    ClientSession session(std::move(one_slot));
    Event holding, release;
    auto holder = create_task([&]() -> Task<void> {
      co_await async_with(session.get(base() + "/echo"), [&](ClientResponse& r) -> Task<void> {
        co_await r.read();
        holding.set();
        co_await release.wait();
      });
    });
    co_await holding.wait();
    http::TimeoutPhase phase = http::TimeoutPhase::total;
    try {
      co_await get_json(session, base() + "/echo");
    } catch (const http::ClientTimeoutError& e) {
      phase = e.phase();
    }
    EXPECT_EQ(phase, http::TimeoutPhase::connect);
    // Once the slot is free, a waiting request gets the pooled connection.
    auto waiter = create_task([&]() -> Task<void> { co_await get_json(session, base() + "/echo"); });
    co_await sleep(20ms);
    release.set();
    co_await holder;
    co_await waiter;
    EXPECT_EQ(session.open_connections(), 1u);
    co_await session.close();
  });
}

TEST(HttpSession, TimeoutSockConnect) {
  // A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs
  // (on loopback, no packet leaves the machine).
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(fd);
  }
  std::string url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/";
  run_http([&]() -> Task<void> {
    ClientSession session(http::ClientTimeout{.sock_connect = 200ms});
    http::TimeoutPhase phase = http::TimeoutPhase::total;
    try {
      co_await get_json(session, url);
    } catch (const http::ClientTimeoutError& e) {
      phase = e.phase();
    }
    EXPECT_EQ(phase, http::TimeoutPhase::sock_connect);
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
  });
  for (int fd : fillers) ::close(fd);
  ::close(listener);
}

// Cancelling a request at every await point (connect, send, headers, each body piece, exit)
// leaves the pool clean, and the next request on the same session gets a correct response.
TEST(HttpSession, CancellationAtEveryAwaitPointLeavesThePoolConsistent) {
  base();
  run_http(
      [&]() -> Task<void> {
        ClientSession session;
        int cancelled = 0, completed = 0;
        for (int k = 0; k < 40; ++k) {
          bool done = false;
          co_await async_with(move_on_after(std::chrono::microseconds(k * 700)), [&](CancelScope&) -> Task<void> {
            http::RequestOptions drip{.params = {{"chunks", "4"}, {"delay", "5"}}};
            co_await async_with(session.get(base() + "/drip", drip), [&](ClientResponse& r) -> Task<void> {
              auto body = co_await r.read();
              EXPECT_EQ(body, "piece-000\npiece-001\npiece-002\npiece-003\n");
            });
            done = true;
          });
          (done ? completed : cancelled) += 1;
          EXPECT_TRUE(pool_is_clean(session)) << "k=" << k;
          EXPECT_LE(session.open_connections(), 1u);
          auto echo = co_await get_json(session, base() + "/echo?k=" + std::to_string(k));
          EXPECT_EQ(echo["args"]["k"], std::to_string(k)) << "a cancelled request poisoned the next one";
        }
        EXPECT_GT(cancelled, 5);
        EXPECT_GT(completed, 5);
        co_await session.close();
        EXPECT_EQ(session.open_connections(), 0u);
      },
      60s);
}

TEST(HttpSession, TaskCancelDuringTheBody) {
  base();
  run_http([&]() -> Task<void> {
    ClientSession session;
    Event reading;
    auto t = create_task([&]() -> Task<void> {
      http::RequestOptions slow{.params = {{"delay", "3000"}}};
      co_await async_with(session.get(base() + "/slow_body", slow), [&](ClientResponse& r) -> Task<void> {
        reading.set();
        co_await r.read();
      });
    });
    co_await reading.wait();
    co_await sleep(20ms);
    t.cancel();
    bool was_cancelled = false;
    try {
      co_await t;
    } catch (const CancelledError&) {
      was_cancelled = true;
    }
    EXPECT_TRUE(was_cancelled);
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
  });
}

// A temporary session is moved into async_with, which owns it for the block and closes it on the
// way out (docs/http.md's first snippet is the second block here).
TEST(HttpSession, TemporarySessionIsOwnedByAsyncWith) {
  base();
  run_http([&]() -> Task<void> {
    http::SessionOptions options;
    options.base_url = base();
    std::size_t open_inside = 0;
    std::size_t keys = co_await async_with(ClientSession(options), [&](ClientSession& session) -> Task<std::size_t> {
      nlohmann::json data = co_await get_json(session, "/get");
      open_inside = session.open_connections();
      co_return data.size();
    });
    EXPECT_EQ(keys, 4u);
    EXPECT_EQ(open_inside, 1u);
    std::string url = base() + "/get";
    int status = 0;
    co_await async_with(http::ClientSession(http::ClientTimeout{.total = 10s}), [&](http::ClientSession& session) -> Task<void> {
      co_await async_with(session.get(url), [&](http::ClientResponse& resp) -> Task<void> {
        nlohmann::json data = co_await resp.json();
        status = resp.status();
        EXPECT_EQ(data["url"], url);
      });
    });
    EXPECT_EQ(status, 200);
  });
}

// A session moves until it is used (entered, or asked for a request); then moving it throws. A
// moved-from session is closed.
TEST(HttpSession, MovableUntilUsedAndAMovedFromSessionIsClosed) {
  run_http([&]() -> Task<void> {
    const std::string nowhere = "http://127.0.0.1:9/";
    ClientSession first;
    ClientSession second(std::move(first));
    EXPECT_TRUE(first.closed());
    EXPECT_FALSE(second.closed());
    EXPECT_EQ(first.open_connections(), 0u);
    std::string refused;
    try {
      co_await async_with(first.get(nowhere), [](ClientResponse&) {});
    } catch (const http::ClientConnectionError& e) {
      refused = e.what();
    }
    EXPECT_NE(refused.find("the session is closed"), std::string::npos) << refused;
    co_await async_with(second, [](ClientSession& entered) {
      EXPECT_THROW(ClientSession moved(std::move(entered)), InvalidStateError);
    });
    EXPECT_TRUE(second.closed());
    ClientSession requested;
    auto request = requested.get(nowhere);
    EXPECT_THROW(ClientSession moved(std::move(requested)), InvalidStateError);
    co_await requested.close();
  });
}

namespace {
// The value the server received in header `name` (from /echo), or nullopt.
std::optional<long> echoed_header(const nlohmann::json& echo, const std::string& name) {
  if (!echo["headers"].contains(name)) return std::nullopt;
  return std::stol(echo["headers"][name].get<std::string>());
}
}  // namespace

// deadline_header tells the server how long the caller still waits: whole milliseconds until the
// nearer of the caller's effective deadline and the request's total timeout, never more than
// either; off by default, per request on, off or renamed; a header given with the request wins.
TEST(HttpSession, DeadlineHeaderCarriesTheRemainingBudget) {
  base();
  run_http([&]() -> Task<void> {
    const std::string name = "X-Request-Timeout-Ms";
    http::SessionOptions options{.timeout = {.total = 10s}, .deadline_header = name};
    ClientSession session(std::move(options));

    auto echo = co_await get_json(session, base() + "/echo");
    std::optional<long> sent = echoed_header(echo, name);
    EXPECT_GT(sent.value_or(0), 0) << echo.dump();
    EXPECT_LE(sent.value_or(0), 10000) << "the request's total timeout";

    co_await async_with(timeout(2s), [&]() -> Task<void> {
      echo = co_await get_json(session, base() + "/echo");
    });
    sent = echoed_header(echo, name);
    EXPECT_GT(sent.value_or(0), 0);
    EXPECT_LE(sent.value_or(0), 2000) << "the caller's deadline is the nearer";

    co_await async_with(CancelScope::after(60s), [&](CancelScope&) -> Task<void> {
      echo = co_await get_json(session, base() + "/echo");
    });
    sent = echoed_header(echo, name);
    EXPECT_GT(sent.value_or(0), 0);
    EXPECT_LE(sent.value_or(0), 10000) << "the total timeout is the nearer";

    http::RequestOptions off;
    off.deadline_header = "";
    echo = co_await get_json(session, base() + "/echo", std::move(off));
    EXPECT_FALSE(echo["headers"].contains(name));

    http::RequestOptions renamed;
    renamed.deadline_header = "X-Budget";
    echo = co_await get_json(session, base() + "/echo", std::move(renamed));
    EXPECT_FALSE(echo["headers"].contains(name));
    sent = echoed_header(echo, "X-Budget");
    EXPECT_GT(sent.value_or(0), 0);
    EXPECT_LE(sent.value_or(0), 10000);

    http::RequestOptions explicit_value;
    explicit_value.headers.add(name, "42");
    echo = co_await get_json(session, base() + "/echo", std::move(explicit_value));
    EXPECT_EQ(echoed_header(echo, name).value_or(0), 42);
    co_await session.close();

    // Off by default; with the option but no deadline at all, nothing to send.
    ClientSession plain;
    echo = co_await get_json(plain, base() + "/echo");
    EXPECT_FALSE(echo["headers"].contains(name));
    co_await plain.close();
    http::SessionOptions unbounded_options{.timeout = {}, .deadline_header = name};
    ClientSession unbounded(std::move(unbounded_options));
    // A shield without a deadline cuts off the test's own bound: no deadline applies.
    co_await async_with(CancelScope(std::nullopt, true), [&](CancelScope&) -> Task<void> {
      echo = co_await get_json(unbounded, base() + "/echo");
    });
    EXPECT_FALSE(echo["headers"].contains(name));
    co_await unbounded.close();
  });
}

// With the deadline header on, a request with less than 1 ms left is not sent: it ends as the
// nearer deadline's expiry ends it (the caller's timeout: its TimeoutError; the request's total:
// ClientTimeoutError), and the idle connection it took stays pooled.
TEST(HttpSession, ABudgetUnderOneMillisecondIsNotSent) {
  run_http([&]() -> Task<void> {
    int received = 0;
    ConnectionHandler handler = [&received](StreamReader r, StreamWriter w) -> Task<void> {
      try {
        for (;;) {
          co_await r.readuntil("\r\n\r\n");
          ++received;
          w.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
          co_await w.drain();
        }
      } catch (const std::exception&) {
        // The client closed the connection.
      }
      w.close();
    };
    Server server = co_await start_server(std::move(handler), "127.0.0.1", 0);
    const std::string url = awith::test::url_of(server);
    http::SessionOptions options{.deadline_header = "X-Request-Timeout-Ms"};
    ClientSession session(std::move(options));
    auto get_ok = [&](const http::RequestOptions& o) -> Task<void> {
      co_await async_with(session.get(url, o), [](ClientResponse& r) -> Task<void> {
        EXPECT_EQ(co_await r.read(), "ok");
      });
    };
    const http::RequestOptions defaults;
    co_await get_ok(defaults);
    EXPECT_EQ(session.idle_connections(), 1u);

    bool scope_timed_out = false;
    try {
      co_await async_with(timeout_at(EventLoop::running().time() + 400us), [&]() -> Task<void> {
        co_await get_ok(defaults);
      });
    } catch (const TimeoutError&) {
      scope_timed_out = true;
    }
    EXPECT_TRUE(scope_timed_out);

    http::RequestOptions tight;
    tight.timeout = http::ClientTimeout{.total = 400us};
    std::optional<http::TimeoutPhase> phase;
    try {
      co_await get_ok(tight);
    } catch (const http::ClientTimeoutError& e) {
      phase = e.phase();
    }
    EXPECT_EQ(phase, http::TimeoutPhase::total);

    co_await sleep(50ms);  // anything sent would have reached the server by now
    EXPECT_EQ(received, 1) << "neither request was sent";
    EXPECT_EQ(session.open_connections(), 1u);
    EXPECT_EQ(session.idle_connections(), 1u);
    co_await get_ok(defaults);
    EXPECT_EQ(received, 2);
    EXPECT_EQ(session.statistics().connections_opened, 1u);
    co_await session.close();
    server.close();
    co_await server.wait_closed();
  });
}

namespace {
// Which error a request ended with: the caller's scope's (TimeoutError), the client's
// (ClientTimeoutError and its phase), or none.
struct Ending {
  bool scope_timeout = false;
  std::optional<http::TimeoutPhase> client_timeout;
  Duration took{};
};
Task<Ending> ending_of(std::function<Task<void>()> request) {
  Ending ending;
  TimePoint start = EventLoop::running().time();
  try {
    co_await request();
  } catch (const TimeoutError&) {
    ending.scope_timeout = true;
  } catch (const http::ClientTimeoutError& e) {
    ending.client_timeout = e.phase();
  }
  ending.took = EventLoop::running().time() - start;
  co_return ending;
}
}  // namespace

// The caller's deadline bounds every phase of a request: when it is nearer than the ClientTimeout
// phase, its expiry ends the request with the scope's own error — TimeoutError from a timeout, a
// quiet end of a CancelScope — never ClientTimeoutError; the connection is closed.
TEST(HttpSession, TheCallersNearerDeadlineEndsTheRequestWithItsOwnError) {
  base();
  run_http([&]() -> Task<void> {
    http::SessionOptions options{.timeout = {.total = 20s, .connect = 10s, .sock_read = 10s},
                                 .connector = {.limit = 1},
                                 .deadline_header = "X-Request-Timeout-Ms"};
    ClientSession session(std::move(options));
    // Waiting for the headers.
    Ending e = co_await ending_of([&]() -> Task<void> {
      co_await async_with(timeout(200ms), [&]() -> Task<void> {
        co_await get_json(session, base() + "/slow_headers?delay=3000");
      });
    });
    EXPECT_TRUE(e.scope_timeout);
    EXPECT_FALSE(e.client_timeout.has_value());
    EXPECT_GE(e.took, 200ms);
    EXPECT_LT(e.took, 2s);
    EXPECT_EQ(session.open_connections(), 0u);
    // Reading the body.
    bool headers_arrived = false;
    e = co_await ending_of([&]() -> Task<void> {
      co_await async_with(timeout(300ms), [&]() -> Task<void> {
        co_await async_with(session.get(base() + "/slow_body?delay=3000"), [&](ClientResponse& r) -> Task<void> {
          headers_arrived = true;
          co_await r.read();
        });
      });
    });
    EXPECT_TRUE(headers_arrived);
    EXPECT_TRUE(e.scope_timeout);
    EXPECT_FALSE(e.client_timeout.has_value());
    EXPECT_LT(e.took, 2s);
    EXPECT_EQ(session.open_connections(), 0u);
    // A CancelScope ends quietly.
    CancelScope scope = CancelScope::after(200ms);
    bool answered = false;
    co_await async_with(scope, [&](CancelScope&) -> Task<void> {
      co_await get_json(session, base() + "/slow_headers?delay=3000");
      answered = true;
    });
    EXPECT_FALSE(answered);
    EXPECT_TRUE(scope.cancelled_caught());
    EXPECT_EQ(session.open_connections(), 0u);
    // Waiting for a pool slot (the only one is held).
    Event holding, release;
    auto holder = create_task([&]() -> Task<void> {
      co_await async_with(session.get(base() + "/echo"), [&](ClientResponse& r) -> Task<void> {
        co_await r.read();
        holding.set();
        co_await release.wait();
      });
    });
    co_await holding.wait();
    e = co_await ending_of([&]() -> Task<void> {
      co_await async_with(timeout(150ms), [&]() -> Task<void> { co_await get_json(session, base() + "/echo"); });
    });
    EXPECT_TRUE(e.scope_timeout);
    EXPECT_FALSE(e.client_timeout.has_value());
    EXPECT_LT(e.took, 2s);
    release.set();
    co_await holder;
    EXPECT_TRUE(pool_is_clean(session));
    co_await session.close();
  });
}

// A ClientTimeout phase nearer than the caller's deadline still ends the request with
// ClientTimeoutError naming the phase, and the caller's scope is not involved.
TEST(HttpSession, ANearerClientTimeoutStillWins) {
  base();
  run_http([&]() -> Task<void> {
    http::SessionOptions options{.timeout = {.total = 20s, .sock_read = 100ms},
                                 .deadline_header = "X-Request-Timeout-Ms"};
    ClientSession session(std::move(options));
    Ending e = co_await ending_of([&]() -> Task<void> {
      co_await async_with(timeout(5s), [&]() -> Task<void> {
        co_await get_json(session, base() + "/slow_headers?delay=3000");
      });
    });
    EXPECT_FALSE(e.scope_timeout);
    EXPECT_EQ(e.client_timeout, http::TimeoutPhase::sock_read);
    EXPECT_LT(e.took, 2s);

    http::RequestOptions short_total;
    short_total.timeout = http::ClientTimeout{.total = 300ms};
    bool cancelled = true;
    e = co_await ending_of([&]() -> Task<void> {
      co_await async_with(CancelScope::after(5s), [&](CancelScope& scope) -> Task<void> {
        try {
          co_await async_with(session.get(base() + "/slow_body?delay=3000", std::move(short_total)),
                              [&](ClientResponse& r) -> Task<void> { co_await r.read(); });
        } catch (...) {
          cancelled = scope.cancel_called();
          throw;
        }
      });
    });
    EXPECT_FALSE(cancelled);
    EXPECT_FALSE(e.scope_timeout);
    EXPECT_EQ(e.client_timeout, http::TimeoutPhase::total);
    EXPECT_LT(e.took, 2s);
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
  });
}
