// awith::run(task): asyncio.run for C++, including its Ctrl-C handling.
#pragma once

#include <utility>

#include "awith/errors.hpp"
#include "awith/loop.hpp"
#include "awith/tasks.hpp"

namespace awith {

// Thrown by run() after Ctrl-C (SIGINT) interrupted it, once every task has finished its cleanup
// (asyncio.run's KeyboardInterrupt). Like CancelledError it is not a std::exception (Python's is a
// BaseException): `catch (const std::exception&)` must not swallow a Ctrl-C. Catch it in main:
// snippet: tests/snippets/headers.cpp#keyboard_interrupt
//
//   int main() {
//     try {
//       return awith::run(amain());
//     } catch (const awith::KeyboardInterrupt&) {
//       return awith::KeyboardInterrupt::exit_status;  // 130, what a shell reports for Ctrl-C
//     }
//   }
//
// Uncaught, it ends the program through std::terminate, as any uncaught exception does.
class KeyboardInterrupt {
 public:
  static constexpr int exit_status = 128 + 2;  // 128 + SIGINT
  const char* what() const noexcept { return "KeyboardInterrupt"; }
};

namespace detail {
// Runs the loop until `main` is done, then cancels every task still alive and runs until they
// have finished, then shuts the default executor down. Rethrows a failure of the loop itself, or
// throws KeyboardInterrupt as run() describes.
void run_main(EventLoop& loop, TaskBase& main);
}  // namespace detail

// Creates a loop, runs `main` to completion on it, cleans up every other task and the executor,
// and returns main's value or rethrows its exception. Calling it inside a running loop throws
// RuntimeError, as asyncio.run does.
//
// Ctrl-C (LoopOptions::handle_sigint, on by default), as asyncio.run since 3.11:
// - The first SIGINT cancels the main task, so every async_with exit and other cleanup runs. When
//   main ends cancelled, run() finishes the shutdown and throws KeyboardInterrupt. A main that
//   handles the cancellation (uncancel() and returns, or raises another exception) keeps its
//   outcome. A SIGINT that arrives after main has finished makes run() throw KeyboardInterrupt
//   after the shutdown instead of returning.
// - A second SIGINT ends the process at once, killed by SIGINT as if nothing handled it (the shell
//   sees it as Ctrl-C, and a script running the program stops too). It does not throw: the loop
//   may be stuck where it cannot be unwound (a cleanup that never ends, a blocking call), and C++
//   cannot unwind from a signal handler.
// - run() installs nothing when SIGINT already has a handler or is ignored when it starts, when
//   it runs on a thread other than the main thread, or with handle_sigint = false. A SIGINT
//   callback added with add_signal_handler replaces the handling while it is installed. run()
//   restores the previous disposition when it returns. Every run() alive in the process (one loop
//   per thread) is cancelled by the same SIGINT.
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
