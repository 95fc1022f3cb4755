// Cancel scopes (trio's CancelScope): a region of a task that can be cancelled as a unit,
// explicitly or by a deadline, optionally shielded from the cancellation outside it.
//
// The shielded cleanup scope is the documented way to write cleanup that takes timeouts and
// cancellation into account (it must not hang, and must not be cut short by the cancellation it
// cleans up after): inside an aexit,
// snippet: tests/snippets/headers.cpp#shielded
//
//   co_await async_with(CancelScope::shielded(2s), [&]() -> Task<void> { co_await flush(); });
//
// runs the graceful part even while the task is being cancelled — and even if a new cancellation
// arrives — but never for longer than 2 s; when the bound passes, the awaits inside raise
// CancelledError, the scope ends quietly (cancelled_caught() is true) and the exit goes on.
#pragma once

#include <exception>
#include <optional>

#include "awith/awaitable.hpp"
#include "awith/loop.hpp"
#include "awith/runtime.hpp"

namespace awith {

namespace detail {

// A Scope on the running task, with an optional deadline that cancels it. Shared by CancelScope,
// Timeout and TaskGroup's body. Movable until it is entered (async_with takes a prvalue manager by
// moving it); once entered, the timer and the task's scope stack point at it, so moving it throws
// InvalidStateError and leaves it untouched, still in force.
class DeadlineScope : TimerNode {
 public:
  explicit DeadlineScope(std::optional<TimePoint> deadline = std::nullopt, bool shield = false) noexcept;
  DeadlineScope(DeadlineScope&& other);
  DeadlineScope& operator=(DeadlineScope&&) = delete;
  ~DeadlineScope();

  void enter();
  // Leaves the scope. Returns true when `error` is this scope's own cancellation: the scope was
  // cancelled and no scope outside it is (then this scope ends the CancelledError that leaves it).
  bool leave(const std::exception_ptr& error) noexcept;
  void cancel() noexcept { scope_.request_cancel(); }
  bool cancel_called() const noexcept { return scope_.cancel_requested() || cancelled_before_; }
  bool deadline_passed() const noexcept { return fired_; }
  std::optional<TimePoint> deadline() const noexcept { return deadline_; }
  void set_deadline(std::optional<TimePoint> when);
  bool entered() const noexcept { return loop_ != nullptr; }
  bool shielded() const noexcept { return scope_.shielded; }
  Scope* scope() noexcept { return &scope_; }

 private:
  static void on_deadline(TimerNode* n) noexcept;
  void arm();
  Scope scope_;
  EventLoop* loop_ = nullptr;
  std::optional<TimePoint> deadline_;
  bool fired_ = false;
  bool cancelled_before_ = false;
};

}  // namespace detail

// Movable until entered, like every scope (moving an entered one throws InvalidStateError).
class CancelScope {
 public:
  explicit CancelScope(std::optional<TimePoint> deadline = std::nullopt, bool shield = false) noexcept
      : scope_(deadline, shield) {}
  // A scope cancelled `delay` after it is created (trio's move_on_after).
  static CancelScope after(Duration delay, bool shield = false);
  // The shielded cleanup scope: outer cancellation cannot reach it, its own bound can.
  static CancelScope shielded(Duration bound) { return after(bound, true); }

  void cancel() noexcept { scope_.cancel(); }
  bool cancel_called() const noexcept { return scope_.cancel_called(); }
  // Whether the scope ended a cancellation of its own (explicit or deadline).
  bool cancelled_caught() const noexcept { return caught_; }
  std::optional<TimePoint> deadline() const noexcept { return scope_.deadline(); }
  void reschedule(std::optional<TimePoint> when) { scope_.set_deadline(when); }

  Ready<CancelScope&> aenter() {
    scope_.enter();
    return {*this};
  }
  // Ends the scope's own cancellation quietly (suppresses it); anything else passes through.
  Ready<bool> aexit(std::exception_ptr error) noexcept {
    caught_ = scope_.leave(error);
    return {caught_};
  }

 private:
  detail::DeadlineScope scope_;
  bool caught_ = false;
};

// The nearest deadline among the scopes that can cancel the running code (anyio's
// current_effective_deadline): every timeout, CancelScope and TaskGroup deadline from the innermost
// scope outward, stopping after a shielded scope; a task started by a TaskGroup continues into the
// scopes around the group. A cleanup scope leaves out the deadlines whose cancellation it hides
// (they have passed, and the cleanup must still run). nullopt: no deadline applies. Clients use it
// to bound their waits and to tell the server how long the caller will wait.
std::optional<TimePoint> current_effective_deadline();

// trio.move_on_after: the body is cancelled after `delay`, and execution continues after the block.
inline CancelScope move_on_after(Duration delay, bool shield = false) { return CancelScope::after(delay, shield); }

}  // namespace awith
