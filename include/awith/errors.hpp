// The error types of the core runtime.
#pragma once

#include <stdexcept>
#include <string>

namespace awith {

// Raised at a suspension point of a cancelled scope. Deliberately NOT derived from std::exception:
// `catch (const std::exception&)` must never swallow a cancellation (asyncio learned this in 3.8,
// when CancelledError moved to BaseException). `catch (...)` sees it and must rethrow it.
class CancelledError {
 public:
  CancelledError() = default;
  explicit CancelledError(std::string message) : message_(std::move(message)) {}
  const std::string& message() const noexcept { return message_; }
  const char* what() const noexcept { return message_.empty() ? "cancelled" : message_.c_str(); }

 private:
  std::string message_;
};

// Raised at the boundary of a timeout scope whose deadline passed (asyncio.TimeoutError).
class TimeoutError : public std::runtime_error {
 public:
  TimeoutError() : std::runtime_error("timed out") {}
  explicit TimeoutError(const std::string& what) : std::runtime_error(what) {}
};

// Misuse of the runtime: awaiting outside a task, run() inside a running loop, a loop-only call
// from another thread, create_task on a closed group (asyncio's RuntimeError).
class RuntimeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A task or future asked for something its state does not allow (asyncio.InvalidStateError).
class InvalidStateError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

}  // namespace awith
