// Unix signals delivered to the event loop (asyncio's loop.add_signal_handler).
//
// The C-level handler only writes the signal number to a non-blocking self-pipe; the loop watches
// the pipe (without counting it as pending I/O, so the virtual clock is unaffected) and runs the
// callbacks from its ready queue as ordinary loop code, so a callback may do anything loop code may
// (close a server, cancel a task). awith::run ends the handling when it shuts the loop down,
// restoring the previous dispositions; a loop run by hand must remove its handlers itself. One
// loop at a time may handle signals, as in asyncio (the main thread's). awith::run's own Ctrl-C
// handling (run.hpp) uses the same pipe, and a SIGINT callback added here replaces it.
#pragma once

#include <functional>

namespace awith {

// Runs callback on the running loop each time `sig` arrives; replaces an earlier callback for the
// same signal. Throws std::invalid_argument for SIGKILL/SIGSTOP or an invalid number and
// RuntimeError when another loop already handles signals.
void add_signal_handler(int sig, std::function<void()> callback);
// Restores the disposition `sig` had before; false if no handler was set.
bool remove_signal_handler(int sig);

}  // namespace awith
