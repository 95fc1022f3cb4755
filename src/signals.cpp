#include "awith/signals.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <stdexcept>
#include <string>

#include "awith/io_errors.hpp"
#include "awith/io_wait.hpp"
#include "awith/tasks.hpp"

namespace awith {
namespace {

struct Registration {
  std::function<void()> callback;
  struct sigaction previous {};
  bool active = false;
};

// Loop-thread state, except g_write_fd which the C handler reads.
volatile sig_atomic_t g_write_fd = -1;
int g_read_fd = -1;
EventLoop* g_loop = nullptr;
std::array<Registration, NSIG> g_handlers;

extern "C" void on_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  if (g_write_fd >= 0) (void)!::write(g_write_fd, &b, 1);
  errno = saved;
}

void restore(int sig) noexcept {
  auto& h = g_handlers[static_cast<std::size_t>(sig)];
  if (!h.active) return;
  ::sigaction(sig, &h.previous, nullptr);
  h = Registration{};
}

// Restores every disposition and closes the pipe when the dispatcher task ends.
struct DispatcherCleanup {
  ~DispatcherCleanup() {
    for (int sig = 1; sig < NSIG; ++sig) restore(sig);
    int w = g_write_fd;
    g_write_fd = -1;
    ::close(w);
    ::close(g_read_fd);
    g_read_fd = -1;
    g_loop = nullptr;
  }
};

Task<void> dispatch() {
  DispatcherCleanup cleanup;
  FdWatch watch(g_read_fd);
  unsigned char buf[64];
  for (;;) {
    ssize_t n = ::read(g_read_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      watch.clear_readable();
      co_await watch.wait_readable();
      continue;
    }
    for (ssize_t i = 0; i < n; ++i) {
      auto& h = g_handlers[buf[i]];
      if (!h.active) continue;
      auto callback = h.callback;  // the callback may remove or replace itself
      try {
        callback();
      } catch (const std::exception& e) {
        EventLoop::running().call_exception_handler("signal " + std::to_string(buf[i]) + " handler failed: " + e.what());
      }
    }
  }
}

}  // namespace

void add_signal_handler(int sig, std::function<void()> callback) {
  if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
    throw std::invalid_argument("add_signal_handler(): signal " + std::to_string(sig) + " cannot be handled");
  auto& loop = EventLoop::running();
  if (g_loop && g_loop != &loop) throw RuntimeError("add_signal_handler(): another event loop handles signals");
  if (!g_loop) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) throw_os_error(errno, "pipe2");
    g_read_fd = fds[0];
    g_write_fd = fds[1];
    g_loop = &loop;
    create_task(dispatch());
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
  return true;
}

}  // namespace awith
