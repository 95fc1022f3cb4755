// gather, wait and as_completed: awaiting several tasks at once, with asyncio's semantics.
#pragma once

#include <cstddef>
#include <exception>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "awith/awaitable.hpp"
#include "awith/borrowing_task.hpp"
#include "awith/errors.hpp"
#include "awith/runtime.hpp"
#include "awith/tasks.hpp"

namespace awith {

// A result or the exception that replaced it (an element of gather(return_exceptions, ...)).
template <class T>
class Outcome {
 public:
  explicit Outcome(std::exception_ptr e) : error_(std::move(e)) {}
  template <class... A>
  explicit Outcome(std::in_place_t, A&&... a) : value_(std::in_place, std::forward<A>(a)...) {}
  bool has_value() const noexcept { return !error_; }
  std::exception_ptr error() const noexcept { return error_; }
  bool cancelled() const noexcept { return error_ && detail::is_cancelled_error(error_); }
  T& value() & {
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  T&& value() && {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
  std::exception_ptr error_;
};

// The value gather() reports for a Task<void>.
using Void = std::monostate;

struct ReturnExceptions {};
// Tag for gather(return_exceptions, ...): exceptions are returned in place of results.
inline constexpr ReturnExceptions return_exceptions{};

namespace detail {

// Waits for a set of tasks (gather's rules): wakes when all are done, or at the first failure
// when exceptions are not returned. If the waiting task is cancelled, every child still running
// is cancelled and the wait goes on until all are done; then CancelledError is raised.
class GatherWait : public WaitSlot {
 public:
  // An uninterruptible wait (interruptible = false) ignores cancellation and waits for every task:
  // for tasks that must not outlive the waiting code.
  GatherWait(std::vector<TaskBase*> tasks, bool return_exceptions, bool interruptible = true);
  GatherWait(const GatherWait&) = delete;
  ~GatherWait();
  // Awaiting tasks that are already done is still a checkpoint (runtime.hpp: CHECKPOINTS).
  bool await_ready() const noexcept { return StepBudget::take() && ready(); }
  bool await_suspend(std::coroutine_handle<> h);
  // The task whose exception gather raises (first to fail), or nullptr.
  TaskBase* await_resume();

 private:
  struct Child : CompletionNode {
    GatherWait* owner = nullptr;
    TaskBase* task = nullptr;
    bool registered = false;
  };
  bool ready() const noexcept;
  static void on_child_done(CompletionNode* n) noexcept;
  static bool on_detach(Waiter* w) noexcept;
  void unregister_all() noexcept;
  void cancel_children() noexcept;

  std::vector<Child> children_;
  std::size_t remaining_ = 0;
  TaskBase* first_failure_ = nullptr;
  bool return_exceptions_;
  bool interruptible_;
  bool cancel_requested_ = false;
  bool waiting_ = false;
};

template <class A>
auto as_handle(A&& a) {
  using D = std::remove_cvref_t<A>;
  if constexpr (requires { typename D::State; }) {
    return D(a);
  } else {
    return create_task(std::forward<A>(a));
  }
}

// An argument gather can move or copy into a task of its own is owned by that task; one it cannot
// (an awaiter built in place such as ev.wait(), or an lvalue Task) is borrowed: a child task
// awaits it where it is, in the caller's full expression.
template <class A>
inline constexpr bool borrowed_v = !std::is_constructible_v<std::remove_cvref_t<A>, A>;

// The operand of co_await names the parameter itself: g++ 12 copies an awaiter that co_await
// reaches through a function call (std::forward) or a lambda capture, which an immovable one refuses.
template <class P>
Task<await_result_t<P>> await_in_place(P&& aw) {
  co_return co_await static_cast<P&&>(aw);
}

template <class A>
auto child_of(A&& a) {
  if constexpr (borrowed_v<A>) {
    return create_task(await_in_place(std::forward<A>(a)));
  } else {
    return as_handle(std::forward<A>(a));
  }
}

template <class T>
using gathered_t = std::conditional_t<std::is_void_v<T>, Void, T>;

template <class T>
gathered_t<T> value_of(const TaskHandle<T>& h) {
  if constexpr (std::is_void_v<T>) {
    h.result();
    return Void{};
  } else {
    return h.result();
  }
}

template <class T>
Outcome<gathered_t<T>> outcome_of(const TaskHandle<T>& h) {
  auto e = h.exception();
  if (e) return Outcome<gathered_t<T>>(e);
  return Outcome<gathered_t<T>>(std::in_place, value_of(h));
}

template <class T>
struct handle_value;
template <class T>
struct handle_value<TaskHandle<T>> {
  using type = T;
};
template <class A>
using awaited_value_t = typename handle_value<decltype(as_handle(std::declval<A>()))>::type;

template <class... H>
Task<std::tuple<gathered_t<typename handle_value<H>::type>...>> gather_handles(H... handles) {
  GatherWait wait({handles.base()...}, false);
  if (TaskBase* failed = co_await wait) std::rethrow_exception(failed->exception_ptr());
  co_return std::tuple<gathered_t<typename handle_value<H>::type>...>(value_of(handles)...);
}

template <class... H>
Task<std::tuple<Outcome<gathered_t<typename handle_value<H>::type>>...>> gather_outcomes(H... handles) {
  GatherWait wait({handles.base()...}, true);
  co_await wait;
  co_return std::tuple<Outcome<gathered_t<typename handle_value<H>::type>>...>(outcome_of(handles)...);
}

template <bool Outcomes, class... H>
using gather_result_t = std::conditional_t<Outcomes, std::tuple<Outcome<gathered_t<typename handle_value<H>::type>>...>,
                                           std::tuple<gathered_t<typename handle_value<H>::type>...>>;

// gather with borrowed arguments. The children start when this is awaited, in the caller's
// expression; every borrowed child has finished before it returns (one still running when
// gather raises is cancelled and awaited), since its awaitable dies with that expression.
template <bool Outcomes, class... A>
Task<gather_result_t<Outcomes, decltype(child_of(std::declval<A>()))...>> gather_in_place(A&&... aws) {
  std::tuple<decltype(child_of(std::forward<A>(aws)))...> handles{child_of(std::forward<A>(aws))...};
  std::exception_ptr error;
  std::optional<gather_result_t<Outcomes, decltype(child_of(std::declval<A>()))...>> result;
  try {
    if constexpr (Outcomes) {
      result.emplace(co_await std::apply([](auto&... h) { return gather_outcomes(h...); }, handles));
    } else {
      result.emplace(co_await std::apply([](auto&... h) { return gather_handles(h...); }, handles));
    }
  } catch (...) {
    error = std::current_exception();
  }
  std::vector<TaskBase*> running;
  std::apply(
      [&](auto&... h) {
        constexpr bool borrowed[] = {borrowed_v<A>...};
        std::size_t i = 0;
        ((borrowed[i++] && !h.done() ? running.push_back(h.base()) : void()), ...);
      },
      handles);
  if (!running.empty()) {
    for (TaskBase* t : running) t->cancel();
    GatherWait drained(std::move(running), true, false);
    co_await drained;
  }
  if (error) std::rethrow_exception(error);
  co_return std::move(*result);
}

template <class T>
Task<std::vector<gathered_t<T>>> gather_vector(std::vector<TaskHandle<T>> handles) {
  std::vector<TaskBase*> bases;
  bases.reserve(handles.size());
  for (auto& h : handles) bases.push_back(h.base());
  GatherWait wait(std::move(bases), false);
  if (TaskBase* failed = co_await wait) std::rethrow_exception(failed->exception_ptr());
  std::vector<gathered_t<T>> out;
  out.reserve(handles.size());
  for (auto& h : handles) out.push_back(value_of(h));
  co_return out;
}

template <class T>
Task<std::vector<Outcome<gathered_t<T>>>> gather_vector_outcomes(std::vector<TaskHandle<T>> handles) {
  std::vector<TaskBase*> bases;
  for (auto& h : handles) bases.push_back(h.base());
  GatherWait wait(std::move(bases), true);
  co_await wait;
  std::vector<Outcome<gathered_t<T>>> out;
  for (auto& h : handles) out.push_back(outcome_of(h));
  co_return out;
}

template <class R>
auto handles_of(R&& range) {
  using E = std::ranges::range_value_t<R>;
  using H = decltype(as_handle(std::declval<E>()));
  std::vector<H> handles;
  for (auto&& item : range) {
    if constexpr (std::is_lvalue_reference_v<decltype(item)> && !requires { typename E::State; }) {
      handles.push_back(as_handle(std::move(item)));  // a Task can only be scheduled once
    } else {
      handles.push_back(as_handle(std::forward<decltype(item)>(item)));
    }
  }
  return handles;
}

}  // namespace detail

// gather(a, b, c): runs awaitables concurrently, each in a task of its own (a TaskHandle is
// awaited as it is); returns their results as a tuple in argument order (Void for void). The
// first exception propagates and the others keep running; cancelling the awaiting task cancels
// every child and waits for them (asyncio.gather). Children are scheduled in argument order.
//
// Ownership: arguments that can be moved or copied (Tasks, TaskHandles) are owned by their child
// tasks, which start at once; the result is a Task that may be stored. An argument that cannot
// (an awaiter built in place: ev.wait(), q.get(), lock.acquire(); an lvalue Task) is borrowed for
// the caller's full expression: the result is then a BorrowingTask, awaited in that expression
// (`co_await gather(ev.wait(), fetch())`); the children start when it is awaited, and a borrowed
// child still running when gather raises is cancelled and awaited before gather returns.
template <class... A>
  requires(!std::is_same_v<std::remove_cvref_t<A>, ReturnExceptions> && ...)
auto gather(A&&... aws) {
  static_assert((Awaitable<A> && ...), "gather(aws...): co_await must accept every argument");
  if constexpr ((detail::borrowed_v<A> || ...)) {
    return BorrowingTask(detail::gather_in_place<false>(std::forward<A>(aws)...));
  } else {
    std::tuple<decltype(detail::as_handle(std::forward<A>(aws)))...> handles{detail::as_handle(std::forward<A>(aws))...};
    return std::apply([](auto&... h) { return detail::gather_handles(h...); }, handles);
  }
}
// gather(return_exceptions, a, b, c): every child's Outcome, exceptions included.
template <class... A>
auto gather(ReturnExceptions, A&&... aws) {
  static_assert((Awaitable<A> && ...), "gather(return_exceptions, aws...): co_await must accept every argument");
  if constexpr ((detail::borrowed_v<A> || ...)) {
    return BorrowingTask(detail::gather_in_place<true>(std::forward<A>(aws)...));
  } else {
    std::tuple<decltype(detail::as_handle(std::forward<A>(aws)))...> handles{detail::as_handle(std::forward<A>(aws))...};
    return std::apply([](auto&... h) { return detail::gather_outcomes(h...); }, handles);
  }
}
// gather(range): a vector of results. The range's Tasks are moved from.
template <std::ranges::input_range R>
  requires(!std::is_same_v<std::remove_cvref_t<R>, ReturnExceptions>)
auto gather(R&& range) {
  return detail::gather_vector(detail::handles_of(std::forward<R>(range)));
}
template <std::ranges::input_range R>
auto gather(ReturnExceptions, R&& range) {
  return detail::gather_vector_outcomes(detail::handles_of(std::forward<R>(range)));
}

enum class ReturnWhen { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };
inline constexpr ReturnWhen FIRST_COMPLETED = ReturnWhen::FIRST_COMPLETED;
inline constexpr ReturnWhen FIRST_EXCEPTION = ReturnWhen::FIRST_EXCEPTION;
inline constexpr ReturnWhen ALL_COMPLETED = ReturnWhen::ALL_COMPLETED;

namespace detail {
// Waits until the condition of asyncio.wait holds or the optional deadline passes. Cancellation
// of the waiting task does not touch the tasks (asyncio.wait never cancels them).
class SetWait : public WaitSlot, public TimerNode {
 public:
  SetWait(std::vector<TaskBase*> tasks, ReturnWhen when, std::optional<Duration> timeout);
  SetWait(const SetWait&) = delete;
  ~SetWait();
  bool await_ready() const noexcept { return StepBudget::take() && satisfied(); }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();

 private:
  struct Child : CompletionNode {
    SetWait* owner = nullptr;
    TaskBase* task = nullptr;
  };
  bool satisfied() const noexcept;
  void unregister_all() noexcept;
  static void on_child_done(CompletionNode* n) noexcept;
  static void on_timeout(TimerNode* n) noexcept;
  static bool on_detach(Waiter* w) noexcept;

  std::vector<Child> children_;
  ReturnWhen when_;
  std::optional<Duration> timeout_;
  bool waiting_ = false;
};
}  // namespace detail

template <class T>
struct WaitResult {
  std::vector<TaskHandle<T>> done;
  std::vector<TaskHandle<T>> pending;
};

// asyncio.wait: splits the tasks into done and pending once `when` holds or `timeout` passes.
template <class T>
Task<WaitResult<T>> wait(std::vector<TaskHandle<T>> tasks, ReturnWhen when = ALL_COMPLETED,
                         std::optional<Duration> timeout = std::nullopt) {
  if (tasks.empty()) throw std::invalid_argument("wait(): the set of tasks is empty");
  std::vector<detail::TaskBase*> bases;
  for (auto& h : tasks) bases.push_back(h.base());
  detail::SetWait waiter(std::move(bases), when, timeout);
  co_await waiter;
  WaitResult<T> out;
  for (auto& h : tasks) (h.done() ? out.done : out.pending).push_back(h);
  co_return out;
}

// asyncio.as_completed: `co_await ac.next()` returns the tasks in the order they finish.
template <class T>
class AsCompleted {
 public:
  explicit AsCompleted(std::vector<TaskHandle<T>> tasks) : pending_(std::move(tasks)) {}
  bool empty() const noexcept { return pending_.empty(); }
  std::size_t remaining() const noexcept { return pending_.size(); }
  // The next task to finish (already done ones first, in their order).
  Task<TaskHandle<T>> next() {
    if (pending_.empty()) throw InvalidStateError("as_completed: no tasks left");
    for (;;) {
      for (std::size_t i = 0; i < pending_.size(); ++i) {
        if (pending_[i].done()) {
          TaskHandle<T> h = pending_[i];
          pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
          co_return h;
        }
      }
      std::vector<detail::TaskBase*> bases;
      for (auto& h : pending_) bases.push_back(h.base());
      detail::SetWait waiter(std::move(bases), FIRST_COMPLETED, std::nullopt);
      co_await waiter;
    }
  }

 private:
  std::vector<TaskHandle<T>> pending_;
};

template <class T>
AsCompleted<T> as_completed(std::vector<TaskHandle<T>> tasks) {
  return AsCompleted<T>(std::move(tasks));
}

}  // namespace awith
