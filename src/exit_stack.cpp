#include "awith/exit_stack.hpp"

namespace awith {

AsyncExitStack::~AsyncExitStack() {
  if (!exits_.empty() && detail::g_debug_enabled)
    detail::report_unclosed("an AsyncExitStack was destroyed with exits that never ran");
}

AsyncExitStack AsyncExitStack::pop_all() noexcept {
  AsyncExitStack moved;
  moved.exits_.swap(exits_);
  return moved;
}

Task<void> AsyncExitStack::aclose() { co_await aexit(nullptr); }

Task<bool> AsyncExitStack::aexit(std::exception_ptr error) {
  std::exception_ptr pending = error;
  while (!exits_.empty()) {
    Exit exit = std::move(exits_.back());
    exits_.pop_back();
    // One cleanup scope per exit, as nested async_with blocks have: a cancellation that interrupts
    // one exit has reached the task, so the next exit hides it and runs to completion.
    detail::CleanupScope cleanup;
    try {
      if (co_await exit(pending)) pending = nullptr;
    } catch (...) {
      pending = std::current_exception();
    }
  }
  if (pending && pending != error) std::rethrow_exception(pending);
  co_return error && !pending;
}

}  // namespace awith
