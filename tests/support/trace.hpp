// A trace of events for tests that compare against the asyncio scenarios' exact output.
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace awith::test {

struct Trace {
  std::vector<std::string> lines;
  void operator()(std::string line) { lines.push_back(std::move(line)); }
  std::string str() const {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
};

// Loop options for timing tests: virtual time, instant and exact.
inline awith::LoopOptions virtual_time() {
  awith::LoopOptions o;
  o.virtual_clock = true;
  return o;
}

}  // namespace awith::test
