// libFuzzer target over the HTTP client's response parsing path (framing, limits, gzip/deflate):
// any input must end in a complete message or a typed error — never a crash, a sanitizer report,
// or a parser that stops consuming without either (which would hang the client).
//
// Input: byte 0 picks HEAD or not and the feed size (1..128 bytes per call, as a socket would
// deliver), the rest is what the server sends. Several responses on one keep-alive connection
// are parsed in turn, as the client does.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "awith/http/parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  bool head = data[0] & 1;
  std::size_t step = 1 + (data[0] >> 1);
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  awith::http::ResponseParser parser(
      awith::http::ParserLimits{.max_header_size = 4096, .max_headers = 32, .max_body_size = 1 << 20});
  parser.reset(head);
  while (!in.empty() && !parser.failed()) {
    std::size_t n = parser.feed(in.substr(0, step));
    in.remove_prefix(n);
    parser.body().clear();  // the client hands the body out as it comes
    if (parser.message_complete()) {
      if (!parser.keep_alive()) break;
      parser.reset(head);
    } else if (n == 0 && !parser.failed()) {
      __builtin_trap();  // no progress, no completion, no error: the client would wait forever
    }
  }
  if (!parser.failed() && !parser.message_complete()) parser.feed_eof();
  if (parser.message_complete() == parser.failed()) {
    // feed_eof ends every message one way or the other, unless nothing was ever sent after a
    // completed keep-alive response (then the fresh parser reports "disconnected").
    __builtin_trap();
  }
  return 0;
}
