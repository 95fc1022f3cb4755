// ClientSession against nginx (private prefix, started by the test binary): gzip'ed static JSON,
// keep-alive over many requests, HEAD and 304 without a body, connection limits under concurrency;
// HTTPS with a throwaway CA: verification, host names, the loudly named opt-out.
#include <gtest/gtest.h>

#include "awith/http/session.hpp"
#include "http/http_test_support.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::nginx;
using awith::test::pool_is_clean;
using awith::test::run_http;
using http::ClientResponse;
using http::ClientSession;

namespace {
std::string url(const std::string& path) { return "http://127.0.0.1:" + std::to_string(nginx().port) + path; }
}  // namespace

TEST(HttpNginx, GzipJsonIsDecoded) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession session;
    co_await async_with(session.get(url("/data.json")), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 200);
      EXPECT_EQ(r.headers().get("Content-Encoding").value_or(""), "gzip");
      EXPECT_EQ(co_await r.text(), nginx().json);
      auto data = co_await r.json();
      EXPECT_EQ(data["items"].size(), 200u);
    });
    // Without Accept-Encoding the same bytes come plain.
    http::RequestOptions identity{.headers = {{"Accept-Encoding", "identity"}}};
    co_await async_with(session.get(url("/data.json"), identity), [&](ClientResponse& r) -> Task<void> {
      EXPECT_FALSE(r.headers().contains("Content-Encoding"));
      EXPECT_EQ(r.headers().get("Content-Length").value_or(""), std::to_string(nginx().json.size()));
      EXPECT_EQ(co_await r.read(), nginx().json);
    });
    co_await session.close();
  });
}

TEST(HttpNginx, KeepAliveOverManyRequests) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession session;
    for (int i = 0; i < 200; ++i) {
      co_await async_with(session.get(url("/data.json")), [&](ClientResponse& r) -> Task<void> {
        EXPECT_EQ((co_await r.read()).size(), nginx().json.size());
      });
      EXPECT_EQ(session.open_connections(), 1u);
    }
    co_await session.close();
    EXPECT_EQ(session.open_connections(), 0u);
  });
}

TEST(HttpNginx, HeadAnd304HaveNoBodyAndKeepTheConnection) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession session;
    std::string etag;
    co_await async_with(session.head(url("/data.json")), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 200);
      etag = std::string(r.headers().get("ETag").value_or(""));
      EXPECT_EQ(co_await r.read(), "");
    });
    EXPECT_FALSE(etag.empty());
    http::RequestOptions conditional{.headers = {{"If-None-Match", etag}}};
    co_await async_with(session.get(url("/data.json"), conditional), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 304);
      EXPECT_EQ(co_await r.read(), "");
    });
    EXPECT_EQ(session.open_connections(), 1u);
    EXPECT_EQ(session.idle_connections(), 1u);
    co_await async_with(session.get(url("/missing.json")), [&](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 404);
      EXPECT_THROW(r.raise_for_status(), http::ClientResponseError);
      co_await r.read();
    });
    co_await session.close();
  });
}

TEST(HttpNginx, ConcurrentRequestsRespectLimitPerHost) {
  nginx();
  run_http([&]() -> Task<void> {
    http::SessionOptions options{.connector = {.limit = 100, .limit_per_host = 4}};
    ClientSession session(std::move(options));
    std::size_t most_open = 0;
    int done = 0;
    co_await async_with(TaskGroup(), [&](TaskGroup& group) -> Task<void> {
      for (int i = 0; i < 40; ++i) {
        group.create_task([&]() -> Task<void> {
          co_await async_with(session.get(url("/data.json")), [&](ClientResponse& r) -> Task<void> {
            most_open = std::max(most_open, session.open_connections());
            EXPECT_EQ(co_await r.text(), nginx().json);
          });
          ++done;
        });
      }
      co_return;
    });
    EXPECT_EQ(done, 40);
    EXPECT_EQ(most_open, 4u);
    EXPECT_TRUE(pool_is_clean(session));
    co_await session.close();
  });
}

namespace {
std::string tls_url(std::uint16_t port, const std::string& host = "127.0.0.1") {
  return "https://" + host + ":" + std::to_string(port) + "/data.json";
}
http::SessionOptions trusting_test_ca() {
  http::SessionOptions options;
  options.connector.tls.ca_file = nginx().ca_file;
  return options;
}
}  // namespace

TEST(HttpsNginx, VerifiedWithACustomCaAndKeptAlive) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession session(trusting_test_ca());
    for (const char* host : {"127.0.0.1", "localhost"}) {
      for (int i = 0; i < 3; ++i) {
        co_await async_with(session.get(tls_url(nginx().tls_port, host)), [&](ClientResponse& r) -> Task<void> {
          EXPECT_EQ(r.status(), 200);
          EXPECT_EQ(r.headers().get("Content-Encoding").value_or(""), "gzip");
          EXPECT_EQ(co_await r.text(), nginx().json);
        });
      }
    }
    EXPECT_EQ(session.open_connections(), 2u) << "one TLS connection per origin, reused";
    co_await session.close();  // close_notify on each, then the sockets close
    EXPECT_EQ(session.open_connections(), 0u);
  });
}

TEST(HttpsNginx, UntrustedCertificateIsAClientSSLError) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession session;  // the system CA store only: the test CA is unknown
    std::string what;
    try {
      co_await async_with(session.get(tls_url(nginx().tls_port)), [](ClientResponse&) -> Task<void> { co_return; });
    } catch (const http::ClientSSLError& e) {
      what = e.what();
    }
    EXPECT_NE(what.find("certificate verification failed"), std::string::npos) << what;
    EXPECT_NE(what.find(tls_url(nginx().tls_port)), std::string::npos) << what;
    EXPECT_EQ(session.open_connections(), 0u);
    co_await session.close();
  });
}

TEST(HttpsNginx, WrongHostNameIsAClientSSLErrorUnlessVerificationIsDisabled) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession verifying(trusting_test_ca());
    bool rejected = false;
    try {
      co_await async_with(verifying.get(tls_url(nginx().wrong_name_port)), [](ClientResponse&) -> Task<void> { co_return; });
    } catch (const http::ClientSSLError&) {
      rejected = true;
    }
    EXPECT_TRUE(rejected);
    co_await verifying.close();

    http::SessionOptions insecure;
    insecure.connector.tls.dangerously_disable_certificate_verification = true;
    ClientSession trusting_anyone(std::move(insecure));
    co_await async_with(trusting_anyone.get(tls_url(nginx().wrong_name_port)), [](ClientResponse& r) -> Task<void> {
      EXPECT_EQ(r.status(), 200);
      co_await r.read();
    });
    co_await trusting_anyone.close();
  });
}

TEST(HttpsNginx, PlainHttpToATlsPortIsATypedError) {
  nginx();
  run_http([&]() -> Task<void> {
    ClientSession session;
    std::string url = "http://127.0.0.1:" + std::to_string(nginx().tls_port) + "/data.json";
    int status = 0;
    co_await async_with(session.get(url), [&](ClientResponse& r) -> Task<void> {
      status = r.status();  // nginx answers plain HTTP on a TLS port with 400
      co_await r.read();
    });
    EXPECT_EQ(status, 400);
    co_await session.close();
  });
}
