#include "awith/signals.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "awith/io_errors.hpp"
#include "awith/tasks.hpp"
#include "run_interrupt.hpp"

namespace awith {
namespace detail {
std::atomic<bool> signal_arrived{false};
}  // namespace detail

namespace {

struct Registration {
  std::function<void()> callback;
  struct sigaction previous {};
  bool active = false;
};

// The self-pipe, created on first use and kept for the life of the process: closing it could let a
// C handler running on another thread at that moment write into a descriptor reused meanwhile.
std::once_flag g_pipe_created;
int g_read_fd = -1;
std::atomic<int> g_write_fd{-1};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<unsigned>::is_always_lock_free,
              "the C handlers use these atomics");
// SIGINTs taken by run()'s handler, ever (RunInterrupt compares against its start).
std::atomic<unsigned> g_interrupts{0};

// The loop that reads the pipe (one at a time, as in asyncio) and the runs a SIGINT cancels.
// g_loop is written under g_mutex; everything else below is used on g_loop's thread only.
std::mutex g_mutex;
std::atomic<EventLoop*> g_loop{nullptr};
bool g_loop_held_by_run = false;  // RunInterrupt attached it: removing the last handler keeps it
std::vector<detail::RunInterrupt*> g_runs;
detail::IoWatch g_watch;
bool g_dispatch_scheduled = false;
std::array<Registration, NSIG> g_handlers;

extern "C" void on_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  int fd = g_write_fd.load(std::memory_order_relaxed);
  if (fd >= 0) (void)!::write(fd, &b, 1);
  detail::signal_arrived.store(true, std::memory_order_release);  // after the write: see loop.hpp
  errno = saved;
}

extern "C" void on_interrupt(int sig) {
  g_interrupts.fetch_add(1, std::memory_order_relaxed);
  on_signal(sig);
}

// A null handler is the default disposition whatever the flags say (ThreadSanitizer reports
// SA_SIGINFO still set after SA_RESETHAND reset a handler).
bool is_handler(const struct sigaction& sa, void (*handler)(int)) {
  if (handler == SIG_DFL) return sa.sa_handler == SIG_DFL;
  return !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == handler;
}

void create_pipe() {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) throw_os_error(errno, "pipe2");
  g_read_fd = fds[0];
  g_write_fd.store(fds[1]);
}

void dispatch();

void on_pipe_event(detail::IoWatch*) {
  if (g_dispatch_scheduled) return;
  g_dispatch_scheduled = true;
  // Callbacks run from the ready queue, not inside the poll: one may close what the same poll
  // reported on.
  g_loop.load()->call_soon(&dispatch);
}

// Caller holds g_mutex. Bytes left from signals that arrived while no loop read the pipe are
// dropped: they belong to handlers that no longer exist.
void attach(EventLoop& loop) {
  std::call_once(g_pipe_created, &create_pipe);
  unsigned char stale[64];
  while (::read(g_read_fd, stale, sizeof stale) > 0) {
  }
  g_watch = detail::IoWatch{};
  g_watch.fd = g_read_fd;
  g_watch.background = true;
  g_watch.on_event = &on_pipe_event;
  loop.add_watch(&g_watch);
  g_dispatch_scheduled = false;
  g_loop.store(&loop);
}

// Caller holds g_mutex and runs on g_loop's thread. A dispatch still queued finds g_loop changed
// and does nothing.
void detach() noexcept {
  EventLoop* loop = g_loop.load();
  if (!loop) return;
  loop->remove_watch(&g_watch);
  g_loop.store(nullptr);
  g_loop_held_by_run = false;
  g_dispatch_scheduled = false;
}

void restore(int sig) noexcept {
  auto& h = g_handlers[static_cast<std::size_t>(sig)];
  if (!h.active) return;
  ::sigaction(sig, &h.previous, nullptr);
  h = Registration{};
}

bool any_handler_active() noexcept {
  return std::any_of(g_handlers.begin(), g_handlers.end(), [](const Registration& h) { return h.active; });
}

void dispatch() {
  EventLoop& loop = EventLoop::running();
  if (g_loop.load() != &loop) return;
  g_dispatch_scheduled = false;
  detail::signal_arrived.store(false, std::memory_order_relaxed);
  unsigned char buf[64];
  for (;;) {
    ssize_t n = ::read(g_read_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (ssize_t i = 0; i < n; ++i) {
      if (g_loop.load() != &loop) return;  // a callback ended this loop's signal handling
      auto& h = g_handlers[buf[i]];
      if (!h.active) {
        if (buf[i] == SIGINT) detail::RunInterrupt::interrupt_all();
        continue;
      }
      auto callback = h.callback;  // the callback may remove or replace itself
      try {
        callback();
      } catch (...) {
        EventLoop::running().call_exception_handler(ExceptionContext(
            "Exception in the handler of signal " + std::to_string(buf[i]), std::current_exception()));
      }
    }
  }
}

}  // namespace

void add_signal_handler(int sig, std::function<void()> callback) {
  if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
    throw std::invalid_argument("add_signal_handler(): signal " + std::to_string(sig) + " cannot be handled");
  auto& loop = EventLoop::running();
  {
    std::lock_guard lock(g_mutex);
    EventLoop* reader = g_loop.load();
    if (reader && reader != &loop) throw RuntimeError("add_signal_handler(): another event loop handles signals");
    if (!reader) attach(loop);
  }
  auto& h = g_handlers[static_cast<std::size_t>(sig)];
  struct sigaction sa {};
  sa.sa_handler = &on_signal;
  sa.sa_flags = SA_RESTART;
  ::sigemptyset(&sa.sa_mask);
  struct sigaction previous {};
  if (::sigaction(sig, &sa, &previous) < 0) throw_os_error(errno, "sigaction");
  if (!h.active) h.previous = previous;
  h.callback = std::move(callback);
  h.active = true;
}

bool remove_signal_handler(int sig) {
  if (sig <= 0 || sig >= NSIG || !g_handlers[static_cast<std::size_t>(sig)].active) return false;
  restore(sig);
  std::lock_guard lock(g_mutex);
  EventLoop* reader = g_loop.load();
  if (reader && reader == EventLoop::current() && !g_loop_held_by_run && !any_handler_active()) detach();
  return true;
}

namespace detail {

RunInterrupt::RunInterrupt(EventLoop& loop, TaskBase& main) : loop_(loop), main_(main) {
  if (!loop.options().handle_sigint) return;
  start_ = g_interrupts.load(std::memory_order_relaxed);
  {
    std::lock_guard lock(g_mutex);
    g_runs.push_back(this);
  }
  registered_ = true;
  if (::gettid() != ::getpid()) return;  // only the main thread installs the handler
  struct sigaction current {};
  if (::sigaction(SIGINT, nullptr, &current) < 0 || !is_handler(current, SIG_DFL)) return;
  {
    std::lock_guard lock(g_mutex);
    if (!g_loop.load()) {
      try {
        attach(loop);
        g_loop_held_by_run = true;
      } catch (const std::exception&) {
        return;  // no descriptor for the pipe: Ctrl-C keeps its default behaviour
      }
    }
  }
  struct sigaction sa {};
  sa.sa_handler = &on_interrupt;
  sa.sa_flags = SA_RESTART | SA_RESETHAND;
  ::sigemptyset(&sa.sa_mask);
  installed_ = ::sigaction(SIGINT, &sa, &previous_) == 0;
}

RunInterrupt::~RunInterrupt() {
  end_signal_handling(loop_);
  if (installed_) {
    struct sigaction current {};
    if (::sigaction(SIGINT, nullptr, &current) == 0 && is_handler(current, &on_interrupt))
      ::sigaction(SIGINT, &previous_, nullptr);
  }
  if (registered_) {
    std::lock_guard lock(g_mutex);
    g_runs.erase(std::find(g_runs.begin(), g_runs.end(), this));
  }
}

unsigned RunInterrupt::count() const noexcept {
  return registered_ ? g_interrupts.load(std::memory_order_relaxed) - start_ : 0;
}

void RunInterrupt::interrupt_all() noexcept {
  EventLoop* here = EventLoop::current();
  std::lock_guard lock(g_mutex);
  for (RunInterrupt* run : g_runs) {
    try {
      if (&run->loop_ == here) {
        run->main_.cancel();
      } else {
        // That run unregisters (under g_mutex) before its loop is destroyed, and its main task
        // outlives every iteration of its loop, where this runs.
        TaskBase* main = &run->main_;
        run->loop_.call_soon_threadsafe([main] { main->cancel(); });
      }
    } catch (const std::exception&) {
      // Out of memory: that run misses this Ctrl-C; the next one ends the process.
    }
  }
}

void end_signal_handling(EventLoop& loop) noexcept {
  std::lock_guard lock(g_mutex);
  if (g_loop.load() != &loop) return;
  for (int sig = 1; sig < NSIG; ++sig) restore(sig);
  detach();
}

}  // namespace detail
}  // namespace awith
