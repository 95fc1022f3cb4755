#include "awith/http/parser.hpp"

#include <http_parser.h>
#include <zlib.h>

#include <algorithm>
#include <limits>

namespace awith::http {

namespace {

enum class Encoding { identity, gzip, deflate };

// Streaming gzip / deflate decoder. "deflate" is zlib-wrapped by the RFC, but some servers send
// raw deflate; like browsers, the first two bytes decide.
class Inflater {
 public:
  Inflater() = default;
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  ~Inflater() { end(); }

  void start(Encoding e) {
    end();
    encoding_ = e;
    prefix_.clear();
    finished_ = false;
  }
  bool active() const noexcept { return encoding_ != Encoding::identity; }
  bool finished() const noexcept { return finished_; }

  // Appends the decoded form of `in` to `out`; false (with `error`) on corrupt or trailing data.
  bool decode(std::string_view in, std::string& out, std::string& error) {
    if (!initialised_) {
      int bits = 16 + MAX_WBITS;
      if (encoding_ == Encoding::deflate) {
        // RFC 1950 header: CM = 8 and the 16-bit header a multiple of 31; otherwise raw deflate.
        prefix_.append(in);
        if (prefix_.size() < 2) return true;
        auto b0 = static_cast<unsigned char>(prefix_[0]), b1 = static_cast<unsigned char>(prefix_[1]);
        bool zlib_wrapped = (b0 & 0x0f) == 8 && ((b0 << 8) | b1) % 31 == 0;
        bits = zlib_wrapped ? MAX_WBITS : -MAX_WBITS;
        if (!init(bits, error)) return false;
        std::string first = std::move(prefix_);
        prefix_.clear();
        return decode(first, out, error);
      }
      if (!init(bits, error)) return false;
    }
    stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    stream_.avail_in = static_cast<uInt>(in.size());
    while (stream_.avail_in > 0) {
      if (finished_) {
        error = "data after the end of the compressed body";
        return false;
      }
      std::size_t old = out.size();
      std::size_t room = std::max<std::size_t>(16 * 1024, std::size_t(stream_.avail_in) * 4);
      out.resize(old + room);
      stream_.next_out = reinterpret_cast<Bytef*>(out.data() + old);
      stream_.avail_out = static_cast<uInt>(room);
      int rc = ::inflate(&stream_, Z_NO_FLUSH);
      out.resize(old + room - stream_.avail_out);
      if (rc == Z_STREAM_END) {
        finished_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        error = std::string("cannot decode the ") + (encoding_ == Encoding::gzip ? "gzip" : "deflate") +
                " body: " + (stream_.msg ? stream_.msg : "corrupt data");
        return false;
      } else if (rc == Z_BUF_ERROR && stream_.avail_out != 0) {
        break;  // needs more input
      }
    }
    return true;
  }

 private:
  bool init(int window_bits, std::string& error) {
    stream_ = z_stream{};
    if (::inflateInit2(&stream_, window_bits) != Z_OK) {
      error = "zlib: inflateInit2 failed";
      return false;
    }
    initialised_ = true;
    return true;
  }
  void end() noexcept {
    if (initialised_) ::inflateEnd(&stream_);
    initialised_ = false;
  }

  z_stream stream_{};
  Encoding encoding_ = Encoding::identity;
  bool initialised_ = false;
  std::string prefix_;  // deflate: the first bytes, until they tell zlib-wrapped from raw
  bool finished_ = false;
};

}  // namespace

struct ResponseParser::Impl {
  http_parser parser{};
  http_parser_settings settings{};
  ParserLimits limits;
  Headers headers;
  std::string reason;
  std::string field, value;  // the header being assembled (a callback may deliver it in pieces)
  bool in_value = false;
  std::string body;
  std::string error_message;
  Inflater inflater;
  std::size_t header_bytes = 0;
  std::uint64_t body_bytes = 0;
  ParseError error = ParseError::none;
  bool head = false;
  bool started = false;
  bool headers_done = false;
  bool message_done = false;
  bool keep_alive = false;
  std::size_t prefix_checked = 0;  // bytes of "HTTP/" verified (Debian builds the parser non-strict)

  explicit Impl(ParserLimits l) : limits(l) {
    http_parser_settings_init(&settings);
    settings.on_message_begin = [](http_parser* p) { return self(p)->on_message_begin(); };
    settings.on_status = [](http_parser* p, const char* at, std::size_t n) {
      return self(p)->on_header_bytes(n) ? (self(p)->reason.append(at, n), 0) : 1;
    };
    settings.on_header_field = [](http_parser* p, const char* at, std::size_t n) {
      return self(p)->on_field(at, n);
    };
    settings.on_header_value = [](http_parser* p, const char* at, std::size_t n) {
      return self(p)->on_value(at, n);
    };
    settings.on_headers_complete = [](http_parser* p) { return self(p)->on_headers_complete(); };
    settings.on_body = [](http_parser* p, const char* at, std::size_t n) { return self(p)->on_body(at, n); };
    settings.on_message_complete = [](http_parser* p) { return self(p)->on_message_complete(); };
  }
  static Impl* self(http_parser* p) noexcept { return static_cast<Impl*>(p->data); }

  void reset(bool head_request) {
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = this;
    head = head_request;
    started = false;
    clear_message();
    body.clear();
    error = ParseError::none;
    error_message.clear();
    message_done = false;
    keep_alive = false;
    prefix_checked = 0;
  }
  void clear_message() {
    headers.clear();
    reason.clear();
    field.clear();
    value.clear();
    in_value = false;
    header_bytes = 0;
    body_bytes = 0;
    headers_done = false;
    inflater.start(Encoding::identity);
  }
  // What a callback returns to stop http_parser with an error: not 1 or 2, which on_headers_complete
  // would take for "no body" / "upgrade" and go on to complete the message.
  int fail(ParseError e, std::string message) {
    if (error == ParseError::none) {
      error = e;
      error_message = std::move(message);
    }
    return -1;
  }

  int on_message_begin() {
    started = true;
    return 0;
  }
  bool on_header_bytes(std::size_t n) {
    header_bytes += n;
    if (header_bytes > limits.max_header_size) {
      fail(ParseError::headers_too_large,
           "the response's header section exceeds " + std::to_string(limits.max_header_size) + " bytes");
      return false;
    }
    return true;
  }
  void flush_header() {
    if (!field.empty() || in_value) headers.add(std::move(field), std::move(value));
    field.clear();
    value.clear();
    in_value = false;
  }
  int on_field(const char* at, std::size_t n) {
    if (!on_header_bytes(n + 4)) return 1;  // + ": " and CRLF
    if (in_value) {
      flush_header();
      if (headers.size() >= limits.max_headers)
        return fail(ParseError::headers_too_large,
                    "the response has more than " + std::to_string(limits.max_headers) + " header fields");
    }
    field.append(at, n);
    return 0;
  }
  int on_value(const char* at, std::size_t n) {
    if (!on_header_bytes(n)) return 1;
    in_value = true;
    value.append(at, n);
    return 0;
  }
  int on_headers_complete() {
    flush_header();
    if (headers.size() > limits.max_headers)
      return fail(ParseError::headers_too_large,
                  "the response has more than " + std::to_string(limits.max_headers) + " header fields");
    int status = parser.status_code;
    bool interim = status >= 100 && status < 200 && status != 101;
    if (interim) return 1;  // no body; the final response follows (on_message_complete skips it)
    headers_done = true;
    bool no_body = head || status == 204 || status == 304 || status == 101;
    if (no_body) return 1;
    if (auto enc = headers.get("Content-Encoding")) {
      if (iequals(*enc, "gzip") || iequals(*enc, "x-gzip")) inflater.start(Encoding::gzip);
      else if (iequals(*enc, "deflate")) inflater.start(Encoding::deflate);
    }
    if (!inflater.active() && parser.content_length != std::numeric_limits<std::uint64_t>::max() &&
        parser.content_length > limits.max_body_size)
      return fail(ParseError::payload_too_large, "the response's Content-Length " +
                                                     std::to_string(parser.content_length) + " exceeds the limit of " +
                                                     std::to_string(limits.max_body_size) + " bytes");
    return 0;
  }
  int on_body(const char* at, std::size_t n) {
    std::size_t before = body.size();
    if (inflater.active()) {
      std::string err;
      if (!inflater.decode({at, n}, body, err)) return fail(ParseError::payload, err);
    } else {
      body.append(at, n);
    }
    body_bytes += body.size() - before;
    if (body_bytes > limits.max_body_size)
      return fail(ParseError::payload_too_large,
                  "the response body exceeds the limit of " + std::to_string(limits.max_body_size) + " bytes");
    return 0;
  }
  int on_message_complete() {
    int status = parser.status_code;
    if (status >= 100 && status < 200 && status != 101) {
      clear_message();  // an interim response: parse the final one that follows
      return 0;
    }
    if (inflater.active() && !inflater.finished())
      return fail(ParseError::payload, "the compressed response body is truncated");
    message_done = true;
    keep_alive = http_should_keep_alive(&parser) && !parser.upgrade && status != 101;
    http_parser_pause(&parser, 1);  // never run into bytes after this message
    return 0;
  }

  void record_parser_error() {
    auto err = static_cast<http_errno>(parser.http_errno);
    if (error != ParseError::none) return;  // a callback's own error says more
    std::string what = http_errno_description(err);
    if (err == HPE_HEADER_OVERFLOW) fail(ParseError::headers_too_large, "the response's header section is too large");
    else if (headers_done) fail(ParseError::payload, "invalid response body: " + what);
    else fail(ParseError::malformed, "invalid HTTP response: " + what);
  }
};

ResponseParser::ResponseParser(ParserLimits limits) : impl_(std::make_unique<Impl>(limits)) { impl_->reset(false); }
ResponseParser::~ResponseParser() = default;

void ResponseParser::reset(bool head_request) { impl_->reset(head_request); }

std::size_t ResponseParser::feed(std::string_view data) {
  auto& m = *impl_;
  if (m.error != ParseError::none || m.message_done || data.empty()) return 0;
  static constexpr std::string_view kPrefix = "HTTP/";
  for (std::size_t i = 0; m.prefix_checked < kPrefix.size() && i < data.size(); ++i, ++m.prefix_checked) {
    if (data[i] != kPrefix[m.prefix_checked]) {
      m.fail(ParseError::malformed, "invalid HTTP response: the status line does not start with HTTP/");
      return 0;
    }
  }
  std::size_t n = http_parser_execute(&m.parser, &m.settings, data.data(), data.size());
  auto err = static_cast<http_errno>(m.parser.http_errno);
  if (m.error != ParseError::none) return n;
  if (err == HPE_PAUSED) return n;
  if (err != HPE_OK) {
    m.record_parser_error();
  } else if (m.parser.upgrade && !m.message_done) {
    m.fail(ParseError::malformed, "the server switched protocols (HTTP upgrade), which this client does not request");
  }
  return n;
}

void ResponseParser::feed_eof() {
  auto& m = *impl_;
  if (m.error != ParseError::none || m.message_done) return;
  if (!m.headers_done) {
    m.fail(ParseError::disconnected, m.started ? "the server closed the connection in the middle of the headers"
                                               : "the server closed the connection without sending a response");
    return;
  }
  http_parser_execute(&m.parser, &m.settings, nullptr, 0);
  if (m.error != ParseError::none) return;
  auto err = static_cast<http_errno>(m.parser.http_errno);
  if (!m.message_done) {
    if (err == HPE_OK || err == HPE_INVALID_EOF_STATE)
      m.fail(ParseError::payload, "the server closed the connection before the response body was complete");
    else
      m.record_parser_error();
  }
  m.keep_alive = false;
}

bool ResponseParser::headers_complete() const noexcept { return impl_->headers_done; }
bool ResponseParser::message_complete() const noexcept { return impl_->message_done; }
bool ResponseParser::failed() const noexcept { return impl_->error != ParseError::none; }
ParseError ResponseParser::error() const noexcept { return impl_->error; }
const std::string& ResponseParser::error_message() const noexcept { return impl_->error_message; }
bool ResponseParser::started() const noexcept { return impl_->started; }
int ResponseParser::status() const noexcept { return impl_->parser.status_code; }
const std::string& ResponseParser::reason() const noexcept { return impl_->reason; }
int ResponseParser::version_minor() const noexcept { return impl_->parser.http_minor; }
const Headers& ResponseParser::headers() const noexcept { return impl_->headers; }
Headers& ResponseParser::headers() noexcept { return impl_->headers; }
bool ResponseParser::keep_alive() const noexcept { return impl_->message_done && impl_->keep_alive; }
std::string& ResponseParser::body() noexcept { return impl_->body; }

}  // namespace awith::http
