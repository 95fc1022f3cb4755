// awith::run(task): asyncio.run for C++.
#pragma once

#include <utility>

#include "awith/errors.hpp"
#include "awith/loop.hpp"
#include "awith/tasks.hpp"

namespace awith {

namespace detail {
// Runs the loop until `main` is done, then cancels every task still alive and runs until they
// have finished, then shuts the default executor down. Rethrows a failure of the loop itself.
void run_main(EventLoop& loop, TaskBase& main);
}  // namespace detail

// Creates a loop, runs `main` to completion on it, cleans up every other task and the executor,
// and returns main's value or rethrows its exception. Calling it inside a running loop throws
// RuntimeError, as asyncio.run does.
template <class T>
T run(Task<T> main, LoopOptions options = {}) {
  if (EventLoop::current()) throw RuntimeError("awith::run() cannot be called from a running event loop");
  EventLoop loop(options);
  auto handle = create_task_on(loop, std::move(main));
  detail::run_main(loop, *handle.base());
  if constexpr (std::is_void_v<T>) {
    handle.result();
  } else if constexpr (std::is_reference_v<T>) {
    return handle.result();
  } else {
    return handle.state_ptr()->take_value();
  }
}

}  // namespace awith
