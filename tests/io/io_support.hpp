// Helpers of the io tests: Python's bytes repr for traces, and running a real peer process.
#pragma once

#include <cstdio>
#include <string>

#include "awith/awith.hpp"

namespace awith::test {

// Python's repr() of a bytes object: b'echo:one\n'.
inline std::string pyrepr(const std::string& s) {
  std::string out = "b'";
  for (unsigned char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (c == '\'') out += "\\'";
    else if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "'";
}

// Reads a child process's stdout to the end and reaps it (blocking: call it off the loop).
inline std::string read_and_close(FILE* p) {
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

// Runs a shell command to completion on the default executor (the loop keeps serving meanwhile);
// returns its stdout. Every command the tests run is bounded with `timeout`.
inline Task<std::string> run_command(std::string command) {
  // A named awaitable: g++ 12 destroys a capturing lambda temporary of a co_await expression twice.
  auto running = to_thread([command] {
    FILE* p = ::popen(command.c_str(), "r");
    return p ? read_and_close(p) : std::string();
  });
  co_return co_await running;
}

}  // namespace awith::test
