// awith::run's Ctrl-C handling (asyncio.run's): the part that lives with the signal machinery of
// signals.cpp, which reads the one self-pipe and dispatches every signal as loop code.
#pragma once

#include <signal.h>

#include "awith/loop.hpp"
#include "awith/runtime.hpp"

namespace awith::detail {

// While alive, a SIGINT cancels `main` and the main task of every other run() alive in the
// process (a process-wide registry, so loops on several threads share one Ctrl-C). Only a run on
// the main thread installs the SIGINT handler, and only where SIGINT has its default disposition:
// a handler the program installed itself wins. The handler is installed with SA_RESETHAND, so the
// second SIGINT meets the default disposition and ends the process. The destructor restores the
// disposition found at construction, unless someone else replaced the handler meanwhile.
class RunInterrupt {
 public:
  RunInterrupt(EventLoop& loop, TaskBase& main);
  ~RunInterrupt();
  RunInterrupt(const RunInterrupt&) = delete;
  RunInterrupt& operator=(const RunInterrupt&) = delete;

  // SIGINTs taken by run()'s handler since construction (counted in the C handler itself, so also
  // those that arrive while the loop is not running, e.g. during the executor's shutdown).
  unsigned count() const noexcept;
  // Cancels the registered main tasks (called by the dispatcher for a SIGINT no callback handles).
  static void interrupt_all() noexcept;

 private:
  EventLoop& loop_;
  TaskBase& main_;
  unsigned start_ = 0;
  bool registered_ = false;
  bool installed_ = false;
  struct sigaction previous_ {};
};

// Ends the loop's signal handling when run() shuts it down: every add_signal_handler disposition
// is restored and the loop stops reading the signal pipe.
void end_signal_handling(EventLoop& loop) noexcept;

}  // namespace awith::detail
