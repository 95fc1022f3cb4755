#include "awith/http/response.hpp"

#include <algorithm>
#include <cstdlib>

#include "awith/stream.hpp"
#include "connection.hpp"

namespace awith::http {

namespace {
std::string lower_trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return out;
}
// Outside the coroutine: g++ 12 destroys a temporary std::string of a throw expression inside a
// coroutine twice.
[[noreturn]] void raise_read_too_large(std::uint64_t limit, const URL& url) {
  throw PayloadTooLargeError("the response body exceeds max_read_size (" + std::to_string(limit) +
                                 " bytes), the limit of read(), text() and json(); stream it with content() or "
                                 "raise max_read_size for this request",
                             url.str());
}
}  // namespace

ClientResponse::ClientResponse(std::string method, URL url, detail::ConnectionPtr conn,
                               std::optional<TimePoint> total_deadline, std::optional<Duration> sock_read,
                               std::uint64_t max_read_size)
    : method_(std::move(method)),
      url_(std::move(url)),
      conn_(std::move(conn)),
      total_deadline_(total_deadline),
      sock_read_(sock_read),
      max_read_size_(max_read_size) {
  auto& p = conn_->parser;
  status_ = p.status();
  reason_ = p.reason();
  headers_ = std::move(p.headers());
}

ClientResponse::ClientResponse(ClientResponse&&) noexcept = default;
ClientResponse& ClientResponse::operator=(ClientResponse&&) noexcept = default;
ClientResponse::~ClientResponse() = default;

std::string ClientResponse::content_type() const {
  auto ct = headers_.get("Content-Type");
  if (!ct) return "application/octet-stream";
  return lower_trimmed(ct->substr(0, ct->find(';')));
}

std::optional<std::string> ClientResponse::charset() const {
  auto ct = headers_.get("Content-Type");
  if (!ct) return std::nullopt;
  std::string_view rest = *ct;
  while (true) {
    auto semi = rest.find(';');
    if (semi == std::string_view::npos) return std::nullopt;
    rest = rest.substr(semi + 1);
    std::string_view param = rest.substr(0, rest.find(';'));
    auto eq = param.find('=');
    if (eq != std::string_view::npos && lower_trimmed(param.substr(0, eq)) == "charset") {
      std::string v = lower_trimmed(param.substr(eq + 1));
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      return v;
    }
  }
}

std::string& ClientResponse::buffer() { return conn_ ? conn_->parser.body() : detached_; }

bool ClientResponse::body_complete() const noexcept { return ended_ || !conn_ || conn_->parser.message_complete(); }

detail::Deadline ClientResponse::read_deadline() const {
  return detail::earliest({total_deadline_, TimeoutPhase::total}, detail::after(sock_read_, TimeoutPhase::sock_read));
}

Task<bool> ClientResponse::fill() {
  if (!conn_) {
    if (ended_) co_return false;
    throw ClientConnectionError("the response's connection was released; read the body inside the response's scope",
                                url_.str());
  }
  detail::Connection& c = *conn_;
  auto& p = c.parser;
  // Feeding in slices bounds what one step can inflate (and so the buffered body).
  constexpr std::size_t kSlice = 16 * 1024;
  for (;;) {
    if (p.message_complete()) {
      ended_ = true;
      co_return false;
    }
    std::string_view in = c.input();
    if (!in.empty()) {
      std::size_t before = p.body().size();
      std::size_t n = p.feed(in.substr(0, kSlice));
      c.consume(n);
      if (p.failed()) {
        std::string message = p.error_message();
        if (p.error() == ParseError::payload_too_large) throw PayloadTooLargeError(message, url_.str());
        throw ClientPayloadError(message, url_.str());
      }
      if (p.body().size() > before) co_return true;
      if (n == 0 && !p.message_complete()) throw ClientPayloadError("the response parser made no progress", url_.str());
      continue;
    }
    if (!co_await c.receive(read_deadline(), url_)) {
      p.feed_eof();
      if (p.failed()) {
        if (p.error() == ParseError::payload_too_large) throw PayloadTooLargeError(p.error_message(), url_.str());
        throw ClientPayloadError(p.error_message(), url_.str());
      }
      if (!p.body().empty()) co_return true;
    }
  }
}

void ClientResponse::release(bool had_error) noexcept {
  if (!conn_) return;
  auto& c = *conn_;
  bool reusable = !had_error && c.parser.message_complete() && c.parser.keep_alive() && c.input().empty();
  if (c.parser.message_complete()) ended_ = true;
  detached_ = std::move(c.parser.body());
  c.parser.body().clear();
  if (reusable) {
    if (auto pool = c.pool.lock()) {
      pool->release(std::move(conn_));
      return;
    }
  }
  conn_.reset();
}

Task<std::string> ClientResponse::read() {
  if (!body_) {
    // A declared length past the limit fails before anything is buffered.
    if (auto length = headers_.get("Content-Length");
        length && std::strtoull(std::string(*length).c_str(), nullptr, 10) > max_read_size_)
      raise_read_too_large(max_read_size_, url_);
    std::string all;
    for (;;) {
      auto& buf = buffer();
      if (all.size() + buf.size() > max_read_size_) raise_read_too_large(max_read_size_, url_);
      if (all.empty()) all.swap(buf);
      else all.append(buf);
      buf.clear();
      if (!co_await fill()) break;
    }
    if (all.size() + buffer().size() > max_read_size_) raise_read_too_large(max_read_size_, url_);
    all.append(buffer());
    buffer().clear();
    body_ = std::move(all);
  }
  co_return *body_;
}

Task<std::string> ClientResponse::text() { co_return co_await read(); }

Task<nlohmann::json> ClientResponse::json(std::optional<std::string> expected) {
  if (expected) {
    std::string ct = content_type();
    bool ok = ct == *expected ||
              (*expected == "application/json" && ct.starts_with("application/") && ct.ends_with("+json"));
    if (!ok)
      throw ContentTypeError(status_, "Attempt to decode JSON with unexpected mimetype: " + ct, url_.str());
  }
  std::string body = co_await read();
  nlohmann::json parsed;
  std::string error;
  try {
    parsed = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    error = e.what();
  }
  if (!error.empty()) throw InvalidJSONError("the response body is not valid JSON: " + error, url_.str());
  co_return parsed;
}

void ClientResponse::raise_for_status() const {
  if (status_ >= 400) throw ClientResponseError(status_, reason_, url_.str());
}

// --- streaming ---------------------------------------------------------------------------------

bool ResponseContent::at_eof() const noexcept {
  auto& r = *response_;
  return r.body_complete() && (r.conn_ ? r.conn_->parser.body().empty() : r.detached_.empty());
}

Task<std::string> ResponseContent::read(std::ptrdiff_t n) {
  auto& r = *response_;
  if (n < 0) {
    std::string all;
    do {
      all.append(r.buffer());
      r.buffer().clear();
    } while (co_await r.fill());
    co_return all;
  }
  if (n == 0) co_return std::string();
  if (r.buffer().empty() && !co_await r.fill()) co_return std::string();
  auto& buf = r.buffer();
  std::size_t take = std::min(buf.size(), static_cast<std::size_t>(n));
  std::string out = buf.substr(0, take);
  buf.erase(0, take);
  co_return out;
}

Task<std::string> ResponseContent::readline(std::size_t limit) {
  auto& r = *response_;
  std::size_t searched = 0;
  for (;;) {
    auto& buf = r.buffer();
    auto nl = buf.find('\n', searched);
    if (nl != std::string::npos) {
      if (nl + 1 > limit) throw LimitOverrunError("line is longer than the limit", nl + 1);
      std::string line = buf.substr(0, nl + 1);
      buf.erase(0, nl + 1);
      co_return line;
    }
    if (buf.size() > limit) throw LimitOverrunError("line is longer than the limit", buf.size());
    searched = buf.size();
    if (!co_await r.fill()) {
      std::string rest = std::move(r.buffer());
      r.buffer().clear();
      co_return rest;
    }
  }
}

Task<std::string> ResponseContent::readexactly(std::size_t n) {
  auto& r = *response_;
  while (r.buffer().size() < n) {
    if (!co_await r.fill()) {
      std::string partial = std::move(r.buffer());
      r.buffer().clear();
      throw IncompleteReadError(std::move(partial), n);
    }
  }
  auto& buf = r.buffer();
  std::string out = buf.substr(0, n);
  buf.erase(0, n);
  co_return out;
}

Task<std::optional<std::string>> ChunkIterator::next() {
  std::string chunk = co_await response_->content().read(static_cast<std::ptrdiff_t>(size_));
  if (chunk.empty()) co_return std::nullopt;
  co_return chunk;
}

}  // namespace awith::http
