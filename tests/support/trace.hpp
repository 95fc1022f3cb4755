// A trace of events for tests that compare against the asyncio scenarios' exact output.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "awith/errors.hpp"
#include "awith/loop.hpp"

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

// Python's spelling of a bool in the traces.
inline std::string py(bool b) { return b ? "True" : "False"; }

// The Python name the asyncio scenarios print for an exception, under the mapping the tests use:
// std::invalid_argument is ValueError, std::out_of_range KeyError, std::system_error OSError.
inline std::string exception_name(const std::exception_ptr& e) {
  if (!e) return "None";
  try {
    std::rethrow_exception(e);
  } catch (const awith::CancelledError&) {
    return "CancelledError";
  } catch (const std::invalid_argument&) {
    return "ValueError";
  } catch (const std::out_of_range&) {
    return "KeyError";
  } catch (const std::system_error&) {
    return "OSError";
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "?";
  }
}

// Loop options for timing tests: virtual time, instant and exact.
inline awith::LoopOptions virtual_time() {
  awith::LoopOptions o;
  o.virtual_clock = true;
  return o;
}

}  // namespace awith::test
