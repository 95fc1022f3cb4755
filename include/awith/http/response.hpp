// ClientResponse (aiohttp's): status line, headers, the URL after redirects and the redirect
// history, and the body — whole (read / text / json) or streamed (content()) with backpressure:
// bytes are received from the socket only when the body is read, one receive at a time.
//
// A response lives inside its manager's scope (session.get(url) with async_with); leaving the
// scope gives the connection back to the pool only if the body was read to its end and the
// connection can be reused, and closes it otherwise.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "awith/http/errors.hpp"
#include "awith/http/headers.hpp"
#include "awith/http/url.hpp"
#include "awith/loop.hpp"
#include "awith/task.hpp"

namespace awith::http {

class ClientResponse;

namespace detail {
struct Connection;
struct ConnectionDeleter {
  void operator()(Connection* c) const noexcept;
};
using ConnectionPtr = std::unique_ptr<Connection, ConnectionDeleter>;
// When a wait expires and which ClientTimeout phase that is.
struct Deadline {
  std::optional<TimePoint> when;
  TimeoutPhase phase = TimeoutPhase::total;
};
}  // namespace detail

// Chunk iteration over a body: `while (auto chunk = co_await it.next()) ...` (aiohttp's
// `async for chunk in resp.content.iter_chunked(n)`).
class ChunkIterator {
 public:
  // The next chunk of at most the iterator's size, or nullopt at the end of the body.
  Task<std::optional<std::string>> next();

 private:
  friend class ResponseContent;
  ChunkIterator(ClientResponse& r, std::size_t n) noexcept : response_(&r), size_(n) {}
  ClientResponse* response_;
  std::size_t size_;
};

// The body as a stream (aiohttp's `resp.content`). A handle: cheap to copy, valid while the
// response is.
class ResponseContent {
 public:
  // Up to n bytes (waits only when nothing is buffered); n < 0: everything to the end. "" at the end.
  Task<std::string> read(std::ptrdiff_t n = -1);
  // Whatever is buffered, or the next bytes that arrive; "" at the end.
  Task<std::string> readany() { return read(static_cast<std::ptrdiff_t>(kChunk)); }
  // One line including "\n" (the last one may lack it); "" at the end. A line longer than `limit`
  // raises awith::LimitOverrunError.
  Task<std::string> readline(std::size_t limit = 64 * 1024);
  // Exactly n bytes; awith::IncompleteReadError when the body ends first.
  Task<std::string> readexactly(std::size_t n);
  ChunkIterator iter_chunked(std::size_t n) { return ChunkIterator(*response_, n); }
  ChunkIterator iter_any() { return ChunkIterator(*response_, kChunk); }
  // The whole body was received and read.
  bool at_eof() const noexcept;

 private:
  static constexpr std::size_t kChunk = 64 * 1024;
  friend class ClientResponse;
  explicit ResponseContent(ClientResponse& r) noexcept : response_(&r) {}
  ClientResponse* response_;
};

class ClientResponse {
 public:
  ClientResponse(ClientResponse&&) noexcept;
  ClientResponse& operator=(ClientResponse&&) noexcept;
  ~ClientResponse();

  const std::string& method() const noexcept { return method_; }
  const URL& url() const noexcept { return url_; }
  int status() const noexcept { return status_; }
  const std::string& reason() const noexcept { return reason_; }
  const Headers& headers() const noexcept { return headers_; }
  // The redirect responses that led here, oldest first (their bodies are not kept).
  const std::vector<ClientResponse>& history() const noexcept { return history_; }
  // The media type of Content-Type, lower case, without parameters ("application/json").
  std::string content_type() const;
  // Content-Type's charset parameter, if any.
  std::optional<std::string> charset() const;
  bool ok() const noexcept { return status_ < 400; }

  // The whole body (decoded from gzip/deflate), cached: later calls return it again.
  // PayloadTooLargeError past the request's max_read_size (SessionOptions), before buffering more.
  Task<std::string> read();
  // The body as text. The bytes are returned as they are (UTF-8 is assumed; no transcoding).
  Task<std::string> text();
  // The body parsed as JSON. ContentTypeError when the media type is not `content_type` (nullopt
  // disables the check; application/*+json is accepted for the default, as aiohttp does);
  // InvalidJSONError when the body is not valid JSON.
  Task<nlohmann::json> json(std::optional<std::string> content_type = "application/json");
  ResponseContent content() noexcept { return ResponseContent(*this); }
  // ClientResponseError{status, reason, url} when status >= 400.
  void raise_for_status() const;

  // The response's connection is still attached (the body may still be read from it).
  bool connected() const noexcept { return conn_ != nullptr; }

 private:
  friend class ClientSession;
  friend class ResponseManager;
  friend class ResponseContent;
  friend class ChunkIterator;
  ClientResponse(std::string method, URL url, detail::ConnectionPtr conn, std::optional<TimePoint> total_deadline,
                 std::optional<Duration> sock_read, std::uint64_t max_read_size);
  // Receives more of the body into buffer(); false once the body has ended.
  Task<bool> fill();
  std::string& buffer();
  bool body_complete() const noexcept;
  // Gives the connection back to the pool when the body ended and it can be reused; closes it
  // otherwise.
  void release(bool had_error) noexcept;
  detail::Deadline read_deadline() const;

  std::string method_;
  URL url_;
  int status_ = 0;
  std::string reason_;
  Headers headers_;
  std::vector<ClientResponse> history_;
  detail::ConnectionPtr conn_;
  std::optional<std::string> body_;  // read()'s cache
  std::string detached_;             // buffered body bytes once the connection is gone
  std::optional<TimePoint> total_deadline_;
  std::optional<Duration> sock_read_;
  std::uint64_t max_read_size_;
  bool ended_ = false;
};

}  // namespace awith::http
