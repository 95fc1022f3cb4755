// Waiting for fd readiness: the bridge between the loop's epoll watches and the io layer
// (streams, servers, TLS, PostgreSQL). An FdWatch registers its fd once, edge-triggered; readers and
// writers try the syscall first and await readiness only after EAGAIN.
#pragma once

#include <coroutine>

#include "awith/loop.hpp"
#include "awith/runtime.hpp"

namespace awith {

class FdWatch;

namespace detail {
// One direction's interruptible wait (suspension contract in runtime.hpp).
struct FdWait : WaitSlot {
  FdWatch* watch;
  bool for_write;
  bool counted = false;
  FdWait(FdWatch* w, bool write) noexcept : watch(w), for_write(write) { Waiter::detach = &on_detach; }
  FdWait(const FdWait&) = delete;
  ~FdWait();
  bool await_ready() const noexcept;
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();
  static bool on_detach(Waiter* w) noexcept;
};
}  // namespace detail

// Owns the registration of one fd with the running loop (not the fd itself).
class FdWatch {
 public:
  FdWatch() = default;
  explicit FdWatch(int fd) { attach(fd); }
  FdWatch(const FdWatch&) = delete;
  FdWatch& operator=(const FdWatch&) = delete;
  ~FdWatch() { detach(); }

  void attach(int fd);  // registers fd with the running loop
  void detach() noexcept;  // unregisters (call before closing the fd); wakes nobody
  bool attached() const noexcept { return loop_ != nullptr; }
  int fd() const noexcept { return watch_.fd; }

  // Readiness as last reported by epoll. Clear it when the syscall returns EAGAIN.
  bool readable() const noexcept { return watch_.readable; }
  bool writable() const noexcept { return watch_.writable; }
  bool hangup() const noexcept { return watch_.hangup; }
  void clear_readable() noexcept { watch_.readable = false; }
  void clear_writable() noexcept { watch_.writable = false; }

  // Await until the fd is readable / writable (immediately if it already is). Cancellable.
  detail::FdWait wait_readable() noexcept { return detail::FdWait(this, false); }
  detail::FdWait wait_writable() noexcept { return detail::FdWait(this, true); }

 private:
  friend struct detail::FdWait;
  struct Watch : detail::IoWatch {
    FdWatch* owner = nullptr;
  };
  static void on_event(detail::IoWatch* w);
  Watch watch_;
  EventLoop* loop_ = nullptr;
  detail::FdWait* reader_ = nullptr;
  detail::FdWait* writer_ = nullptr;
};

}  // namespace awith
