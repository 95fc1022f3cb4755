// ClientSession (aiohttp's): an HTTP/1.1 client with a keep-alive connection pool, used as an
// async context manager.
// snippet: tests/snippets/http.cpp#session
//
//   co_await async_with(http::ClientSession(http::ClientTimeout{.total = 10s}), [&](http::ClientSession& session) -> Task<void> {
//     co_await async_with(session.get(url), [&](http::ClientResponse& resp) -> Task<void> {
//       nlohmann::json data = co_await resp.json();
//     });
//   });
//
// Leaving a response's scope returns its connection to the pool only when the body was read to
// the end and the connection is reusable; otherwise (unread body, error, cancellation, timeout) the
// connection is closed — a cancelled request never poisons a later one. Leaving the session closes
// every pooled connection and waits until they are closed.
//
// Timeouts (ClientTimeout, as aiohttp): `total` bounds the whole request including reading the
// body; `connect` bounds getting a connection (waiting for a pool slot + connecting); `sock_connect`
// the TCP connect alone; `sock_read` every single wait for data from the server. An expired phase
// raises ClientTimeoutError naming it. The caller's own deadlines (the enclosing timeout,
// CancelScope and TaskGroup scopes: current_effective_deadline()) bound every wait as well; when
// one of them is the nearer, its expiry ends the request with the scope's own error (TimeoutError
// from a timeout, a quiet end of a CancelScope), not ClientTimeoutError.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "awith/awaitable.hpp"
#include "awith/http/errors.hpp"
#include "awith/http/headers.hpp"
#include "awith/http/parser.hpp"
#include "awith/http/response.hpp"
#include "awith/http/url.hpp"
#include "awith/loop.hpp"
#include "awith/task.hpp"

namespace awith::http {

struct ClientTimeout {
  std::optional<Duration> total;
  std::optional<Duration> connect;
  std::optional<Duration> sock_connect;
  std::optional<Duration> sock_read;
};
// aiohttp's DEFAULT_TIMEOUT: 5 minutes in total, 30 s to connect a socket.
inline constexpr ClientTimeout kDefaultTimeout{std::chrono::minutes(5), std::nullopt, std::chrono::seconds(30),
                                               std::nullopt};

// Certificate verification for https:// URLs. Verification (chain + host name) is on by default.
struct TlsOptions {
  bool use_system_ca = true;  // the system CA store (/etc/ssl/certs)
  std::string ca_file;        // an extra CA bundle (PEM), e.g. a private CA
  // Accepts any certificate from anyone: encryption without authentication. For throwaway test
  // servers only; the long name is on purpose.
  bool dangerously_disable_certificate_verification = false;
};

// aiohttp's TCPConnector options.
struct ConnectorOptions {
  std::size_t limit = 100;          // open connections in all (0: unlimited)
  std::size_t limit_per_host = 0;   // open connections per scheme://host:port (0: unlimited)
  Duration keepalive_timeout = std::chrono::seconds(15);  // an idle pooled connection older than this is closed
  TlsOptions tls;
};

// When a request that failed on a reused keep-alive connection, before any byte of a response,
// is sent again on a new connection. The server may have closed the idle connection just as the
// request was written (a race no check can close), or it may have received and run the request
// and then died: only the first case is safe to repeat for a request that is not idempotent.
enum class RetryStale {
  // The request provably never left (no byte of it was accepted by the kernel), or its method is
  // idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE: running it twice has the effect of once,
  // RFC 9110 9.2.2), as urllib3 does. The default.
  when_safe,
  // Only when the request provably never left, whatever its method.
  unsent_only,
  // Every such request, also a POST or PATCH the server may already have run: the application
  // vouches that its requests are safe to repeat.
  always,
  // Never: the failure is raised.
  never,
};

// What the pool did since the session was made: for tests and monitoring.
struct PoolStatistics {
  std::uint64_t connections_opened = 0;
  // Idle keep-alive connections found closed or broken by the server when taken from the pool
  // (data or EOF where nothing may arrive), and closed instead of used: each would have failed
  // the request it was taken for.
  std::uint64_t dropped_idle = 0;
  // Requests sent again on a new connection after their reused one failed before any response
  // byte (RetryStale).
  std::uint64_t resent = 0;
};

struct SessionOptions {
  std::string base_url;  // relative request URLs are resolved against it
  Headers headers;       // sent with every request (a request's own headers win)
  ClientTimeout timeout = kDefaultTimeout;
  bool raise_for_status = false;  // every response with status >= 400 raises ClientResponseError
  ConnectorOptions connector;
  ParserLimits limits;
  std::string user_agent = "awith-http/0.1";
  // Bound on closing the pooled connections when the session is left (TLS close_notify included).
  Duration close_timeout = std::chrono::seconds(2);
  RetryStale retry_stale = RetryStale::when_safe;
  // read(), text() and json() hold the whole body in memory: past this many (decoded) bytes they
  // raise PayloadTooLargeError naming the limit, before buffering more. 32 MiB is far above what
  // an API answers with, and small enough that a mistaken or hostile multi-gigabyte body cannot
  // take a service's memory; raise it per request for a download buffered on purpose, or stream
  // it with content() (bounded by limits.max_body_size only).
  std::uint64_t max_read_size = std::uint64_t{32} << 20;
  // The name of a request header that tells the server how long the caller still waits (e.g.
  // "X-Request-Timeout-Ms", as userver's clients send): whole milliseconds until the nearer of the
  // caller's effective deadline and the request's `total` timeout, computed as the request is
  // written, so a server can give up on work nobody waits for. Not sent when neither applies.
  // With less than 1 ms left the request is not sent: it ends as that deadline's expiry ends it.
  // Empty (the default): no such header.
  std::string deadline_header;
};

struct RequestOptions {
  Params params;   // appended to the URL's query, encoded
  Headers headers;
  std::optional<std::string> data;            // the body as bytes / text (Content-Type: application/octet-stream)
  std::optional<nlohmann::json> json;         // the body as JSON (Content-Type: application/json)
  std::optional<Params> form;                 // the body as a form (application/x-www-form-urlencoded)
  std::optional<ClientTimeout> timeout;       // replaces the session's for this request
  bool allow_redirects = true;
  int max_redirects = 10;  // the redirect that reaches it raises TooManyRedirects (0: none allowed)
  std::optional<bool> raise_for_status;       // overrides the session's
  std::optional<RetryStale> retry_stale;      // overrides the session's
  std::optional<std::uint64_t> max_read_size; // overrides the session's
  std::optional<std::string> deadline_header; // overrides the session's ("" turns it off)
};

class ClientSession;

// What session.get(...) returns: the request as an async context manager whose aenter sends it and
// returns the response once its headers arrived; aexit releases or closes the connection.
class ResponseManager {
 public:
  ResponseManager(ClientSession& session, std::string method, std::string url, RequestOptions options)
      : session_(&session), method_(std::move(method)), url_(std::move(url)), options_(std::move(options)) {}

  Task<ClientResponse&> aenter();
  Ready<> aexit(std::exception_ptr error) noexcept;

 private:
  ClientSession* session_;
  std::string method_;
  std::string url_;
  RequestOptions options_;
  std::optional<ClientResponse> response_;
};

namespace detail {
class Pool;
}

class ClientSession {
 public:
  ClientSession();
  explicit ClientSession(SessionOptions options);
  explicit ClientSession(ClientTimeout timeout);
  // A session can be moved until it is used — entered, or asked for a request (its
  // ResponseManagers point at it) — so that async_with(ClientSession(options), ...) can own it.
  // Moving a used session throws InvalidStateError. A moved-from session is closed: its requests
  // raise ClientConnectionError("the session is closed").
  ClientSession(ClientSession&& other);
  ClientSession& operator=(ClientSession&&) = delete;
  ClientSession(const ClientSession&) = delete;
  ClientSession& operator=(const ClientSession&) = delete;
  // A session that was never closed aborts its pooled connections (no graceful close possible here).
  ~ClientSession();

  // Each has an overload without options: a defaulted `RequestOptions options = {}` would be an
  // aggregate built inside the caller's co_await expression, which g++ 12 destroys twice when the
  // request throws (docs/design.md, toolchain notes).
  ResponseManager request(std::string method, std::string url, RequestOptions options);
  ResponseManager request(std::string method, std::string url);
  ResponseManager get(std::string url) { return request("GET", std::move(url)); }
  ResponseManager get(std::string url, RequestOptions options) { return request("GET", std::move(url), std::move(options)); }
  ResponseManager post(std::string url) { return request("POST", std::move(url)); }
  ResponseManager post(std::string url, RequestOptions options) { return request("POST", std::move(url), std::move(options)); }
  ResponseManager put(std::string url) { return request("PUT", std::move(url)); }
  ResponseManager put(std::string url, RequestOptions options) { return request("PUT", std::move(url), std::move(options)); }
  ResponseManager patch(std::string url) { return request("PATCH", std::move(url)); }
  ResponseManager patch(std::string url, RequestOptions options) { return request("PATCH", std::move(url), std::move(options)); }
  ResponseManager delete_(std::string url) { return request("DELETE", std::move(url)); }
  ResponseManager delete_(std::string url, RequestOptions options) { return request("DELETE", std::move(url), std::move(options)); }
  ResponseManager head(std::string url) { return request("HEAD", std::move(url)); }
  ResponseManager head(std::string url, RequestOptions options) { return request("HEAD", std::move(url), std::move(options)); }

  // Closes every pooled connection and waits until they are closed (bounded by close_timeout).
  // Later requests raise ClientConnectionError("Session is closed").
  Task<void> close();
  bool closed() const noexcept { return closed_; }

  Ready<ClientSession&> aenter() noexcept {
    in_use_ = true;
    return {*this};
  }
  Task<void> aexit(std::exception_ptr) { return close(); }

  const SessionOptions& options() const noexcept { return options_; }
  // Connections open (in use + idle) and idle in the pool: for tests and monitoring.
  std::size_t open_connections() const noexcept;
  std::size_t idle_connections() const noexcept;
  PoolStatistics statistics() const noexcept;

 private:
  friend class ResponseManager;
  // Sends the request, follows redirects, returns the response once its headers arrived.
  Task<ClientResponse> send(std::string method, std::string url, RequestOptions options);
  // `head` is the request head without its closing blank line: the deadline header, computed
  // when the request is written, goes after it.
  Task<ClientResponse> send_once(const std::string& method, const URL& url, std::string& head,
                                 const std::string& body, const ClientTimeout& timeout,
                                 std::optional<TimePoint> total_deadline, RetryStale retry_stale,
                                 std::uint64_t max_read_size, const std::string& deadline_header);

  SessionOptions options_;
  std::shared_ptr<detail::Pool> pool_;  // null once moved from
  bool closed_ = false;
  bool in_use_ = false;
};

}  // namespace awith::http
