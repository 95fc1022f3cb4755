// asyncio.timeout / timeout_at / wait_for: a cancel scope whose own expiry becomes TimeoutError.
#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "awith/awaitable.hpp"
#include "awith/cancel_scope.hpp"
#include "awith/async_with.hpp"
#include "awith/borrowing_task.hpp"
#include "awith/contextlib.hpp"
#include "awith/errors.hpp"
#include "awith/loop.hpp"
#include "awith/task.hpp"

namespace awith {

// Used with async_with: when the deadline passes, the body is cancelled at its current await and
// TimeoutError (with the CancelledError as its nested exception) is raised at the boundary. An
// outer cancellation or an outer timeout passes through unchanged (the outermost cancelled scope
// owns the cancellation).
class Timeout {
 public:
  explicit Timeout(std::optional<TimePoint> when) noexcept : scope_(when) {}

  std::optional<TimePoint> when() const noexcept { return scope_.deadline(); }
  // Moves the deadline (absolute loop time); nullopt disarms; a past deadline fires at the next
  // loop iteration.
  void reschedule(std::optional<TimePoint> when) { scope_.set_deadline(when); }
  // True once the deadline passed and cancelled the body.
  bool expired() const noexcept { return scope_.deadline_passed(); }

  Ready<Timeout&> aenter() {
    scope_.enter();
    return {*this};
  }
  Ready<> aexit(std::exception_ptr error) {
    if (scope_.leave(error)) raise_from(error, TimeoutError());
    return {};
  }

 private:
  detail::DeadlineScope scope_;
};

// timeout(delay): expires `delay` from now (loop time); timeout(std::nullopt) never expires
// until rescheduled.
inline Timeout timeout(std::optional<Duration> delay) {
  if (!delay) return Timeout(std::nullopt);
  return Timeout(EventLoop::running().time() + *delay);
}
template <class Rep, class Period>
Timeout timeout(std::chrono::duration<Rep, Period> delay) {
  return timeout(std::optional<Duration>(std::chrono::duration_cast<Duration>(delay)));
}
inline Timeout timeout_at(std::optional<TimePoint> when) { return Timeout(when); }

namespace detail {
// P is the awaitable's type (wait_for owns a move or copy of it) or a reference to it (wait_for
// borrows it); either way it is awaited with the caller's value category, A& or A.
template <class A, class P>
Task<await_result_t<A>> await_with_timeout(P aw, std::optional<Duration> delay) {
  using R = await_result_t<A>;
  // A local reference as the operand: g++ 12 copies an awaiter reached through a lambda capture.
  co_return co_await async_with(timeout(delay), [&]() -> Task<R> {
    auto& operand = aw;
    co_return co_await static_cast<A&&>(operand);
  });
}
}  // namespace detail

// asyncio.wait_for: awaits `aw` (a Task runs inline, a TaskHandle is cancelled and awaited on
// expiry) under timeout(delay); nullopt waits without a limit.
//
// aw is anything co_await accepts, written in place. One that can be moved or copied (a Task, a
// TaskHandle) is owned: the result is a Task that may be stored and awaited later. One that
// cannot — an awaiter built in place such as lock.acquire(), q.get() or ev.wait() — is borrowed
// for the caller's full expression: the result is a BorrowingTask, awaited in that expression
// (`co_await wait_for(q.get(), 1s)`), never stored. On expiry the wait is cancelled at once: the
// lock is not taken, the item stays in the queue.
template <class A>
auto wait_for(A&& aw, std::optional<Duration> delay) {
  static_assert(Awaitable<A>, "wait_for(aw, delay): co_await aw must compile (a Task, a TaskHandle, an awaiter)");
  using Plain = std::remove_cvref_t<A>;
  if constexpr (std::is_constructible_v<Plain, A>) {
    return detail::await_with_timeout<A, Plain>(std::forward<A>(aw), delay);
  } else {
    return BorrowingTask<await_result_t<A>>(detail::await_with_timeout<A, A&&>(std::forward<A>(aw), delay));
  }
}
template <class A, class Rep, class Period>
auto wait_for(A&& aw, std::chrono::duration<Rep, Period> delay) {
  return wait_for(std::forward<A>(aw), std::optional<Duration>(std::chrono::duration_cast<Duration>(delay)));
}

}  // namespace awith
