// Unix signals delivered to the event loop (asyncio's loop.add_signal_handler).
//
// The C-level handler only writes the signal number to a non-blocking self-pipe; a dispatcher task
// on the loop reads the pipe and runs the callbacks as ordinary loop code, so a callback may do
// anything loop code may (close a server, cancel a task). The dispatcher starts with the first
// handler and ends with the loop (awith::run cancels it at shutdown), restoring the previous
// dispositions. One loop at a time may handle signals, as in asyncio (the main thread's).
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
