// The HTTP/1.x response parser: libhttp-parser (Debian's libhttp-parser 2.9, the parser Node.js
// used until llhttp) for the framing, plus limits and gzip/deflate decoding. Pure and synchronous —
// bytes in, events out — so the client can feed it from the stream's buffer at its own pace and
// the fuzzer (tests/fuzz/fuzz_response_parser.cpp) can drive it directly. docs/http.md says why
// this parser.
//
// Framing: Content-Length, chunked, close-delimited (feed_eof ends it), no body for HEAD, 1xx,
// 204 and 304. Interim 1xx responses (100 Continue, 103 Early Hints) are skipped. Parsing stops at
// the end of a message, so bytes after it are never taken for the next response.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "awith/http/headers.hpp"

namespace awith::http {

struct ParserLimits {
  std::size_t max_header_size = 64 * 1024;   // status line + header section, bytes
  std::size_t max_headers = 128;             // header fields
  std::uint64_t max_body_size = 1ull << 30;  // decoded body bytes
};

enum class ParseError : std::uint8_t {
  none,
  malformed,          // status line / headers are not HTTP/1.x
  headers_too_large,  // ParserLimits::max_header_size or max_headers exceeded
  disconnected,       // EOF before the header section ended
  payload,            // broken body: bad chunk, truncated, undecodable gzip/deflate
  payload_too_large,  // ParserLimits::max_body_size exceeded
};

class ResponseParser {
 public:
  explicit ResponseParser(ParserLimits limits = {});
  ~ResponseParser();
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // Starts a new response; head_request: the request was HEAD (the response has no body).
  void reset(bool head_request = false);
  // Parses from `data`; returns how many bytes it consumed. Stops at the end of the message and
  // at the first error (then failed() is true and nothing more is consumed).
  std::size_t feed(std::string_view data);
  // The peer closed the connection: completes a close-delimited body, or records the truncation.
  void feed_eof();

  bool headers_complete() const noexcept;
  bool message_complete() const noexcept;
  bool failed() const noexcept;
  ParseError error() const noexcept;
  const std::string& error_message() const noexcept;
  // Some byte of this response arrived (a stale keep-alive connection shows none).
  bool started() const noexcept;

  int status() const noexcept;
  const std::string& reason() const noexcept;
  int version_minor() const noexcept;  // HTTP/1.<minor>
  const Headers& headers() const noexcept;
  Headers& headers() noexcept;
  // After message_complete(): the connection can carry another request.
  bool keep_alive() const noexcept;

  // Decoded body bytes produced so far and not taken yet; the caller consumes from the front.
  std::string& body() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace awith::http
