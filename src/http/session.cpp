#include "awith/http/session.hpp"

#include <stdexcept>
#include <utility>

#include "awith/cancel_scope.hpp"
#include "awith/tasks.hpp"
#include "connection.hpp"

namespace awith::http {

const char* to_string(TimeoutPhase phase) noexcept {
  switch (phase) {
    case TimeoutPhase::total: return "total";
    case TimeoutPhase::connect: return "connect";
    case TimeoutPhase::sock_connect: return "sock_connect";
    case TimeoutPhase::sock_read: return "sock_read";
  }
  return "?";
}

namespace {

void check_header_text(std::string_view name, std::string_view value) {
  auto bad = [](std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos; };
  if (name.empty() || bad(name) || name.find(':') != std::string_view::npos || bad(value))
    throw std::invalid_argument("invalid HTTP header (CR, LF, NUL or ':' in the name, or an empty name): " +
                                std::string(name));
}

bool is_redirect(int status) noexcept {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Raises the typed error for a parser failure.
[[noreturn]] void raise_parse_error(const ResponseParser& p, const URL& url) {
  switch (p.error()) {
    case ParseError::headers_too_large: throw HeadersTooLargeError(p.error_message(), url.str());
    case ParseError::disconnected: throw ServerDisconnectedError(p.error_message(), url.str());
    case ParseError::payload: throw ClientPayloadError(p.error_message(), url.str());
    case ParseError::payload_too_large: throw PayloadTooLargeError(p.error_message(), url.str());
    case ParseError::malformed:
    case ParseError::none: break;
  }
  throw MalformedResponseError(p.error_message(), url.str());
}

// Feeds the parser until the header section is complete.
Task<void> read_head(detail::Connection& c, bool head_request, detail::Deadline total,
                     std::optional<Duration> sock_read, const URL& url) {
  auto& p = c.parser;
  p.reset(head_request);
  while (!p.headers_complete()) {
    std::string_view in = c.input();
    if (!in.empty()) {
      std::size_t n = p.feed(in);
      c.consume(n);
      if (p.failed()) raise_parse_error(p, url);
      if (n == 0) throw MalformedResponseError("the response parser made no progress", url.str());
      continue;
    }
    if (!co_await c.receive(detail::earliest(total, detail::after(sock_read, TimeoutPhase::sock_read)), url)) {
      p.feed_eof();
      if (p.failed()) raise_parse_error(p, url);
    }
  }
}

// Outside the coroutines: g++ 12 destroys a temporary std::string of a throw expression inside a
// coroutine twice.
[[noreturn]] void raise_total_timeout(const URL& url) { throw ClientTimeoutError(TimeoutPhase::total, url.str()); }

// How long the caller still waits for a request: until the nearer of its effective deadline and
// the request's total deadline (the caller's on a tie, as its scope owns that expiry).
struct Budget {
  Duration left;
  bool callers;
};
std::optional<Budget> remaining_budget(std::optional<TimePoint> total) {
  std::optional<TimePoint> caller = current_effective_deadline();
  if (!caller && !total) return std::nullopt;
  bool callers = caller && (!total || *caller <= *total);
  TimePoint when = callers ? *caller : *total;
  return Budget{when - EventLoop::running().time(), callers};
}

// RetryStale's rule for a request that failed on a reused connection before any response byte.
bool may_resend(RetryStale rule, const std::string& method, bool request_left) {
  switch (rule) {
    case RetryStale::never:
      return false;
    case RetryStale::always:
      return true;
    case RetryStale::unsent_only:
      return !request_left;
    case RetryStale::when_safe:
      break;
  }
  if (!request_left) return true;
  for (const char* idempotent : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
    if (method == idempotent) return true;
  return false;
}

}  // namespace

ClientSession::ClientSession(SessionOptions options)
    : options_(std::move(options)), pool_(std::make_shared<detail::Pool>(options_.connector, options_.limits)) {}

ClientSession::ClientSession() : ClientSession(SessionOptions{}) {}

ClientSession::ClientSession(ClientTimeout timeout) : ClientSession(SessionOptions{.timeout = timeout}) {}

ClientSession::ClientSession(ClientSession&& other) {
  if (other.in_use_) throw InvalidStateError("a ClientSession cannot be moved once it was entered or sent a request");
  options_ = std::move(other.options_);
  pool_ = std::move(other.pool_);
  closed_ = std::exchange(other.closed_, true);
}

ClientSession::~ClientSession() {
  if (pool_) pool_->abort_idle();
}

std::size_t ClientSession::open_connections() const noexcept { return pool_ ? pool_->open() : 0; }
std::size_t ClientSession::idle_connections() const noexcept { return pool_ ? pool_->idle() : 0; }
PoolStatistics ClientSession::statistics() const noexcept { return pool_ ? pool_->statistics() : PoolStatistics(); }

Task<void> ClientSession::close() {
  if (closed_) co_return;
  closed_ = true;
  co_await pool_->close(options_.close_timeout);
}

Task<ClientResponse> ClientSession::send_once(const std::string& method, const URL& url, std::string& head,
                                              const std::string& body, const ClientTimeout& timeout,
                                              std::optional<TimePoint> total_deadline, RetryStale retry_stale,
                                              std::uint64_t max_read_size, const std::string& deadline_header) {
  using namespace std::chrono_literals;
  detail::Deadline total{total_deadline, TimeoutPhase::total};
  detail::Deadline connect = detail::earliest(total, detail::after(timeout.connect, TimeoutPhase::connect));
  const std::size_t head_size = head.size();
  for (int attempt = 0;;) {
    detail::ConnectionPtr conn = co_await pool_->acquire(url, connect, timeout.sock_connect, attempt > 0);
    head.resize(head_size);
    if (!deadline_header.empty()) {
      std::optional<Budget> budget = remaining_budget(total_deadline);
      if (budget && budget->left < 1ms) {
        // Too late for any answer, and for a budget of at least 1 ms: the request is not sent
        // and ends as the nearer deadline's expiry ends it.
        pool_->release(std::move(conn));  // unused: it stays pooled
        if (!budget->callers) raise_total_timeout(url);
        // The caller's deadline is less than 1 ms away: its scope's cancellation ends the request.
        co_await sleep(budget->left);
        co_await checkpoint();
        continue;  // that scope's deadline was moved meanwhile
      }
      if (budget)
        head.append(deadline_header)
            .append(": ")
            .append(std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(budget->left).count()))
            .append("\r\n");
    }
    head.append("\r\n");
    bool reused = conn->reused;
    bool stale = false;
    try {
      co_await conn->send(head, body, total, url);
      co_await read_head(*conn, method == "HEAD", total, timeout.sock_read, url);
    } catch (const ClientConnectionError& e) {
      // A reused keep-alive connection failed before any response byte: the server closed it
      // while idle, or received the request and died. Once on a new connection, where RetryStale
      // allows it.
      bool timed_out = dynamic_cast<const ClientTimeoutError*>(&e) != nullptr;
      if (!reused || timed_out || conn->parser.started() || attempt > 0) throw;
      if (!may_resend(retry_stale, method, conn->request_left)) throw;
      stale = true;
    }
    if (stale) {
      ++attempt;
      ++pool_->statistics().resent;
      continue;
    }
    ClientResponse resp(method, url, std::move(conn), total_deadline, timeout.sock_read, max_read_size);
    co_return resp;
  }
}

Task<ClientResponse> ClientSession::send(std::string method, std::string url_text, RequestOptions options) {
  if (closed_) throw ClientConnectionError("the session is closed", url_text);
  URL url = options_.base_url.empty() ? URL::parse(url_text) : URL::parse(options_.base_url).join(url_text);
  url = url.with_params(options.params);
  const ClientTimeout& timeout = options.timeout ? *options.timeout : options_.timeout;
  const RetryStale retry_stale = options.retry_stale.value_or(options_.retry_stale);
  const std::uint64_t max_read_size = options.max_read_size.value_or(options_.max_read_size);
  std::optional<TimePoint> total_deadline;
  if (timeout.total) total_deadline = EventLoop::running().time() + *timeout.total;

  int bodies = int(options.data.has_value()) + int(options.json.has_value()) + int(options.form.has_value());
  if (bodies > 1) throw std::invalid_argument("a request takes at most one of data, json and form");
  std::string body;
  std::string content_type;
  if (options.data) {
    body = std::move(*options.data);
    content_type = "application/octet-stream";
  } else if (options.json) {
    body = options.json->dump();
    content_type = "application/json";
  } else if (options.form) {
    body = urlencode(*options.form);
    content_type = "application/x-www-form-urlencoded";
  }
  bool has_body = bodies == 1;

  Headers headers;
  for (auto& [k, v] : options_.headers)
    if (!options.headers.contains(k)) headers.add(k, v);
  for (auto& [k, v] : options.headers) headers.add(k, v);
  for (auto& [k, v] : headers) check_header_text(k, v);
  // A header of that name given with the request wins over the computed one.
  std::string deadline_header = options.deadline_header.value_or(options_.deadline_header);
  if (!deadline_header.empty()) {
    check_header_text(deadline_header, "");
    if (headers.contains(deadline_header)) deadline_header.clear();
  }

  std::vector<ClientResponse> history;
  for (int redirects = 0;;) {
    std::string head;
    head.reserve(256);
    head.append(method).append(" ").append(url.target()).append(" HTTP/1.1\r\n");
    if (!headers.contains("Host")) head.append("Host: ").append(url.host_header()).append("\r\n");
    if (!headers.contains("User-Agent")) head.append("User-Agent: ").append(options_.user_agent).append("\r\n");
    if (!headers.contains("Accept")) head.append("Accept: */*\r\n");
    if (!headers.contains("Accept-Encoding")) head.append("Accept-Encoding: gzip, deflate\r\n");
    if (has_body && !headers.contains("Content-Type")) head.append("Content-Type: ").append(content_type).append("\r\n");
    if (has_body || method == "POST" || method == "PUT" || method == "PATCH")
      head.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
    for (auto& [k, v] : headers)
      if (!iequals(k, "Content-Length") && !iequals(k, "Transfer-Encoding")) head.append(k).append(": ").append(v).append("\r\n");

    ClientResponse resp = co_await send_once(method, url, head, body, timeout, total_deadline, retry_stale,
                                             max_read_size, deadline_header);
    auto location = resp.headers().get("Location");
    if (!options.allow_redirects || !is_redirect(resp.status()) || !location) {
      resp.history_ = std::move(history);
      bool raise = options.raise_for_status.value_or(options_.raise_for_status);
      if (raise && resp.status() >= 400) {
        resp.release(true);
        resp.raise_for_status();
      }
      co_return resp;
    }
    ++redirects;
    URL next = url.join(*location);
    int status = resp.status();
    // The redirect's own body is not wanted: keep the connection only if it already ended.
    resp.release(!resp.body_complete());
    history.push_back(std::move(resp));
    if (redirects >= options.max_redirects)
      throw TooManyRedirects(status, "too many redirects (" + std::to_string(redirects) + ")", next.str());
    // 303 turns everything but HEAD into GET; 301/302 turn POST into GET (what every client does);
    // 307/308 repeat the request as it was.
    if ((status == 303 && method != "HEAD") || ((status == 301 || status == 302) && method == "POST")) {
      method = "GET";
      body.clear();
      has_body = false;
      headers.erase("Content-Type");
    }
    if (next.origin() != url.origin()) {
      headers.erase("Authorization");
      headers.erase("Cookie");
    }
    headers.erase("Host");
    url = std::move(next);
  }
}

ResponseManager ClientSession::request(std::string method, std::string url, RequestOptions options) {
  in_use_ = true;
  return ResponseManager(*this, std::move(method), std::move(url), std::move(options));
}

ResponseManager ClientSession::request(std::string method, std::string url) {
  in_use_ = true;
  return ResponseManager(*this, std::move(method), std::move(url), RequestOptions());
}

Task<ClientResponse&> ResponseManager::aenter() {
  response_.emplace(co_await session_->send(std::move(method_), std::move(url_), std::move(options_)));
  co_return *response_;
}

Ready<> ResponseManager::aexit(std::exception_ptr error) noexcept {
  if (response_) response_->release(error != nullptr);
  return {};
}

}  // namespace awith::http
