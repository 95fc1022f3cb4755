// asyncio.timeout / timeout_at / wait_for: a cancel scope whose own expiry becomes TimeoutError.
#pragma once

#include <exception>
#include <optional>
#include <type_traits>

#include "awith/awaitable.hpp"
#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/errors.hpp"
#include "awith/loop.hpp"
#include "awith/task.hpp"

namespace awith {

// Used with async_with: when the deadline passes, the body is cancelled at its current await and
// TimeoutError (with the CancelledError as its nested exception) is raised at the boundary. An
// outer cancellation or an outer timeout passes through unchanged (rule 2).
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

// asyncio.wait_for: awaits `aw` (a Task runs inline, a TaskHandle is cancelled and awaited on
// expiry) under timeout(delay); nullopt waits without a limit.
template <class A>
auto wait_for(A aw, std::optional<Duration> delay) -> Task<await_result_t<A>> {
  using R = await_result_t<A>;
  if constexpr (std::is_void_v<R>) {
    co_await async_with(timeout(delay), [&]() -> Task<void> { co_await std::move(aw); });
  } else {
    co_return co_await async_with(timeout(delay), [&]() -> Task<R> { co_return co_await std::move(aw); });
  }
}
template <class A, class Rep, class Period>
auto wait_for(A aw, std::chrono::duration<Rep, Period> delay) {
  return wait_for(std::move(aw), std::optional<Duration>(std::chrono::duration_cast<Duration>(delay)));
}

}  // namespace awith
