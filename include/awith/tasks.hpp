// Scheduled tasks (asyncio.Task): create_task, TaskHandle, current_task, all_tasks, sleep, shield.
#pragma once

#include <concepts>
#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include "awith/source_location.hpp"
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "awith/awaitable.hpp"
#include "awith/borrowing_task.hpp"
#include "awith/errors.hpp"
#include "awith/loop.hpp"
#include "awith/runtime.hpp"
#include "awith/task.hpp"

namespace awith {

namespace detail {

template <class T>
class TaskState final : public TaskBase {
 public:
  using handle_type = typename Task<T>::handle_type;
  TaskState(EventLoop& loop, handle_type coro, SourceLocation where) noexcept
      : TaskBase(loop, coro, where), coro_(coro) {}

  // The result; rethrows the task's exception (CancelledError if it was cancelled).
  decltype(auto) result() {
    if (!done()) throw InvalidStateError("result(): the task is not done");
    mark_retrieved();
    if (exception_) std::rethrow_exception(exception_);
    if constexpr (std::is_void_v<T>) {
      return;
    } else if constexpr (std::is_reference_v<T>) {
      return static_cast<T>(*value_);
    } else {
      return (*value_);
    }
  }
  T take_value() {
    if constexpr (std::is_void_v<T>) {
      result();
    } else if constexpr (std::is_reference_v<T>) {
      return result();
    } else {
      result();
      return std::move(*value_);
    }
  }

  static void* operator new(std::size_t n) { return FramePool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { FramePool::deallocate(p, n); }

 private:
  bool coroutine_done() const noexcept override { return coro_.done(); }
  void take_result() noexcept override {
    auto& p = coro_.promise();
    if constexpr (!std::is_void_v<T>) {
      if (!p.exception) {
        if constexpr (std::is_reference_v<T>) {
          value_ = p.value;
        } else {
          try {
            value_.emplace(std::move(*p.value));
          } catch (...) {
            p.exception = std::current_exception();
          }
        }
      }
    }
    finish(p.exception);
  }
  void destroy_frame() noexcept override {
    if (coro_) coro_.destroy();
    coro_ = {};
  }
  void destroy_self() noexcept override { delete this; }
  ~TaskState() override { destroy_frame(); }

  handle_type coro_;
  using Stored = std::conditional_t<std::is_void_v<T>, char,
                                    std::conditional_t<std::is_reference_v<T>,
                                                       std::remove_reference_t<T>*, std::optional<T>>>;
  [[no_unique_address]] Stored value_{};
};

// Waits for a task to finish. On cancellation of the waiting task the awaited task is cancelled
// too and the wait goes on until it has finished (asyncio's Task.cancel propagation); with
// `shielded` the waiter stops waiting at once and the task keeps running (asyncio.shield).
struct TaskWait : WaitSlot, CompletionNode {
  TaskBase* target;
  bool shielded;
  bool registered = false;
  TaskWait(TaskBase* t, bool shield) noexcept : target(t), shielded(shield) {
    Waiter::detach = &on_detach;
    CompletionNode::notify = &on_done;
  }
  TaskWait(const TaskWait&) = delete;
  ~TaskWait() {
    if (registered) target->remove_completion(this);
  }
  bool await_ready() const noexcept { return StepBudget::take() && target->done(); }
  bool await_suspend(std::coroutine_handle<> h) {
    if (&target->loop() != &this_task().loop())
      throw RuntimeError("awaiting a task that belongs to another event loop");
    return attempt_op(*this, h);
  }
  bool can_complete() const noexcept { return target->done(); }
  void complete() noexcept {}
  void enqueue() noexcept {
    registered = true;
    target->add_completion(this);
  }
  static void on_done(CompletionNode* n) noexcept {
    auto* self = static_cast<TaskWait*>(n);
    self->registered = false;
    self->wake();
  }
  static bool on_detach(Waiter* w) noexcept {
    auto* self = static_cast<TaskWait*>(w);
    if (self->shielded) {
      self->target->remove_completion(self);
      self->registered = false;
      return true;
    }
    self->target->cancel();
    return false;  // keep waiting for the cancelled task to end
  }
  // A wait whose detach kept it going (not shielded) ends with the awaited task's own outcome.
  void finish_wait() { end(); }
};

}  // namespace detail

// The handle create_task returns: awaitable (result or exception), cancellable, inspectable.
// Copies share the task. Dropping every handle does not stop the task.
template <class T = void>
class TaskHandle {
 public:
  using State = detail::TaskState<T>;
  TaskHandle() = default;
  explicit TaskHandle(State* s) noexcept : state_(s) {
    if (state_) state_->add_ref();
  }
  TaskHandle(const TaskHandle& o) noexcept : TaskHandle(o.state_) {}
  TaskHandle(TaskHandle&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
  TaskHandle& operator=(TaskHandle o) noexcept {
    std::swap(state_, o.state_);
    return *this;
  }
  ~TaskHandle() {
    if (state_) state_->release();
  }

  explicit operator bool() const noexcept { return state_ != nullptr; }
  bool done() const { return state().done(); }
  bool cancelled() const { return state().cancelled(); }
  // Requests cancellation; false if the task is already done.
  bool cancel(std::string message = {}) { return state().cancel(std::move(message)); }
  int cancelling() const { return state().cancelling(); }
  int uncancel() { return state().uncancel(); }
  decltype(auto) result() const { return state().result(); }
  // The exception the task ended with (nullptr on success); CancelledError if it was cancelled.
  std::exception_ptr exception() const {
    if (!done()) throw InvalidStateError("exception(): the task is not done");
    state().mark_retrieved();
    return state().exception_ptr();
  }
  // f(handle) is scheduled with call_soon once the task is done (immediately if it already is).
  template <class F>
  void add_done_callback(F f);
  SourceLocation where() const { return state().where(); }
  detail::TaskBase* base() const noexcept { return state_; }
  State* state_ptr() const noexcept { return state_; }

  struct Awaiter : detail::TaskWait {
    State* st;
    bool move_out;
    Awaiter(State* s, bool shield, bool move) : TaskWait(s, shield), st(s), move_out(move) {}
    T await_resume() {
      finish_wait();
      if constexpr (std::is_void_v<T>) {
        st->result();
      } else if constexpr (std::is_reference_v<T>) {
        return st->result();
      } else {
        if (move_out) return st->take_value();
        return st->result();
      }
    }
  };
  Awaiter operator co_await() const& { return Awaiter(&state(), false, false); }
  Awaiter operator co_await() && { return Awaiter(&state(), false, true); }

 private:
  State& state() const {
    if (!state_) throw InvalidStateError("empty awith::TaskHandle");
    return *state_;
  }
  State* state_ = nullptr;
};

namespace detail {
template <class F>
struct DoneCallback final : CompletionNode {
  F fn;
  TaskBase* task;
  explicit DoneCallback(F f, TaskBase* t) : fn(std::move(f)), task(t) { notify = &fire; }
  static void fire(CompletionNode* n) noexcept {
    auto* self = static_cast<DoneCallback*>(n);
    self->task->loop().call_soon([self] {
      std::unique_ptr<DoneCallback> owned(self);
      owned->fn();
    });
  }
};
}  // namespace detail

template <class T>
template <class F>
void TaskHandle<T>::add_done_callback(F f) {
  auto call = [f = std::move(f), h = *this]() mutable { f(h); };
  if (done()) {
    state().loop().call_soon(std::move(call));
    return;
  }
  state().add_completion(new detail::DoneCallback<decltype(call)>(std::move(call), state_));
}

// Schedules `task` on the running loop (asyncio.create_task). The task starts at the loop's next
// iteration, after what is already ready.
template <class T>
TaskHandle<T> create_task(Task<T> task, SourceLocation where = SourceLocation::current()) {
  if (!task.valid()) throw InvalidStateError("create_task(): empty awith::Task");
  auto& loop = EventLoop::running();
  auto* state = new detail::TaskState<T>(loop, task.release(), where);
  TaskHandle<T> handle(state);
  state->schedule();
  return handle;
}

namespace detail {
// A callable returning a Task (typically a lambda with captures).
template <class F>
concept TaskFactory = requires(F& f) { requires is_task_v<decltype(f())>; };
// Runs f() while owning f: a lambda's captures live in the lambda object, so the object must
// outlive the coroutine it starts. Moving it into this frame guarantees that.
template <class F>
auto call_owned(F f) -> decltype(f()) {
  co_return co_await f();
}
}  // namespace detail

// create_task(lambda): the lambda is kept alive for as long as the task runs (unlike
// create_task(lambda()), where a capturing lambda would die at the end of the statement).
template <detail::TaskFactory F>
auto create_task(F f, SourceLocation where = SourceLocation::current()) {
  return create_task(detail::call_owned(std::move(f)), where);
}

namespace detail {
// A callable returning an awaitable other than a Task, such as [&] { return q.get(); }.
template <class F>
concept AwaitableFactory =
    !TaskFactory<F> && !Awaitable<F&> && std::invocable<F&> && Awaitable<std::invoke_result_t<F&>>;
// Builds f()'s awaitable in place in this frame (so it need not be movable) and awaits it.
template <class F>
auto await_built(F f) -> Task<await_result_t<std::invoke_result_t<F&>>> {
  static_assert(!is_borrowing_task_v<std::invoke_result_t<F&>>,
                "create_task(factory): the factory returns an awaitable that borrows temporaries of its own "
                "return statement, which are gone when it returns; use a coroutine lambda: "
                "create_task([&]() -> Task<R> { co_return co_await wait_for(q.get(), 1s); })");
  co_return co_await f();
}
// Awaits its own move or copy of an awaitable with the caller's value category: a copy of a
// TaskHandle is awaited as an lvalue, so the result is not moved out of the shared task.
template <class A>
Task<await_result_t<A>> await_owned(std::remove_cvref_t<A> aw) {
  co_return co_await static_cast<A&&>(aw);
}
// The task that runs an awaitable other than a Task: it owns a move or a copy of it.
template <class A>
auto owning_task(A&& aw) {
  using Plain = std::remove_cvref_t<A>;
  static_assert(Awaitable<A>, "create_task(x): x must be a Task, an awaitable, or a callable returning one");
  static_assert(!is_borrowing_task_v<Plain>,
                "create_task(aw): aw borrows temporaries of this expression (wait_for(q.get(), 1s), "
                "gather(ev.wait(), ...)) and the task outlives it; use a coroutine lambda: "
                "create_task([&]() -> Task<R> { co_return co_await wait_for(q.get(), 1s); })");
  static_assert(std::is_constructible_v<Plain, A>,
                "create_task(aw): the task outlives this expression, so it must own aw, and aw cannot be "
                "moved or copied (an awaiter built in place, such as q.get() or lock.acquire()); pass a "
                "factory that builds it inside the task: create_task([&] { return q.get(); })");
  return await_owned<A>(std::forward<A>(aw));
}
}  // namespace detail

// create_task(factory): a callable returning any awaitable; the awaitable is built inside the
// task, so one that cannot be moved works: create_task([&] { return q.get(); }).
template <detail::AwaitableFactory F>
auto create_task(F f, SourceLocation where = SourceLocation::current()) {
  return create_task(detail::await_built(std::move(f)), where);
}
// create_task(aw): any other awaitable (asyncio.ensure_future), moved or copied into the task.
// A TaskHandle is awaited by the new task (cancelling that one cancels the awaited task too).
template <class A>
  requires(!detail::is_task_v<std::remove_cvref_t<A>> && !detail::TaskFactory<std::remove_cvref_t<A>> &&
           !detail::AwaitableFactory<std::remove_cvref_t<A>>)
auto create_task(A&& aw, SourceLocation where = SourceLocation::current()) {
  return create_task(detail::owning_task(std::forward<A>(aw)), where);
}

// The same on a loop that is not running yet (used by run()).
template <class T>
TaskHandle<T> create_task_on(EventLoop& loop, Task<T> task,
                             SourceLocation where = SourceLocation::current()) {
  if (!task.valid()) throw InvalidStateError("create_task(): empty awith::Task");
  loop.check_thread("create_task");
  auto* state = new detail::TaskState<T>(loop, task.release(), where);
  TaskHandle<T> handle(state);
  state->schedule();
  return handle;
}

// Awaits a task without letting this task's cancellation reach it (asyncio.shield): when the
// awaiting task is cancelled, the await raises CancelledError and the shielded task goes on.
template <class T>
Task<T> shield(TaskHandle<T> handle) {
  typename TaskHandle<T>::Awaiter w(handle.state_ptr(), true, false);
  co_return co_await w;
}
template <class T>
Task<T> shield(Task<T> task) {
  co_return co_await shield(create_task(std::move(task)));
}

// A reference to a task (current_task / all_tasks). It holds a reference, as TaskHandle does: the
// task's state stays valid after the task has ended, so a TaskRef kept past the task's end still
// answers (done() and cancelled() are true or false, cancel() returns false). The count is not
// atomic: use a TaskRef on its loop's thread only.
class TaskRef {
 public:
  explicit TaskRef(detail::TaskBase* t) noexcept : t_(t) { t_->add_ref(); }
  TaskRef(const TaskRef& o) noexcept : TaskRef(o.t_) {}
  TaskRef& operator=(const TaskRef& o) noexcept {
    TaskRef copy(o);
    std::swap(t_, copy.t_);
    return *this;
  }
  ~TaskRef() { t_->release(); }

  bool done() const noexcept { return t_->done(); }
  bool cancelled() const noexcept { return t_->cancelled(); }
  // Requests cancellation; false if the task is already done.
  bool cancel(std::string message = {}) { return t_->cancel(std::move(message)); }
  int cancelling() const noexcept { return t_->cancelling(); }
  int uncancel() noexcept { return t_->uncancel(); }
  SourceLocation where() const noexcept { return t_->where(); }
  bool operator==(const TaskRef& o) const noexcept { return t_ == o.t_; }
  template <class T>
  bool is(const TaskHandle<T>& h) const noexcept {
    return h.base() == t_;
  }

 private:
  detail::TaskBase* t_;  // never null
};

// The task running now; throws RuntimeError outside a task.
TaskRef current_task();
// Every task of the running loop that is not done.
std::vector<TaskRef> all_tasks();

namespace detail {
struct SleepAwaiter : WaitSlot, TimerNode {
  Duration delay;
  explicit SleepAwaiter(Duration d) noexcept : delay(d) {
    Waiter::detach = &on_detach;
    TimerNode::fire = &on_fire;
  }
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume() { end(); }
  SleepAwaiter(const SleepAwaiter&) = delete;
  ~SleepAwaiter() {
    if (armed()) task->loop().remove_timer(this);
  }
  static void on_fire(TimerNode* n) noexcept;
  static bool on_detach(Waiter* w) noexcept;
};
}  // namespace detail

// Suspends for `delay` of loop time. sleep(0) yields once: the task goes to the back of the ready
// queue and runs again after every task that was ready before it (asyncio's order).
inline detail::SleepAwaiter sleep(Duration delay) noexcept { return detail::SleepAwaiter(delay); }
template <class Rep, class Period>
detail::SleepAwaiter sleep(std::chrono::duration<Rep, Period> delay) noexcept {
  return detail::SleepAwaiter(std::chrono::duration_cast<Duration>(delay));
}
// sleep(0) and sleep(2) as in Python (an exact match, so it also wins over POSIX ::sleep).
inline detail::SleepAwaiter sleep(int seconds) noexcept { return detail::SleepAwaiter(std::chrono::seconds(seconds)); }
// sleep(0.1) as in Python: seconds as a number.
inline detail::SleepAwaiter sleep(double seconds) noexcept {
  return detail::SleepAwaiter(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds)));
}

// A cancellation point that need not wait (trio's checkpoint, tokio's consume_budget): throws
// CancelledError when a visible scope is cancelled, and spends one unit of the task step's budget,
// yielding to the loop once it is spent. For CPU-bound loops that never await anything else.
// It does not always yield: `co_await sleep(0)` does.
inline detail::CheckpointAwaiter checkpoint() noexcept { return {}; }

// Runs `task` with the step budget lifted (tokio's unconstrained): its operations that complete
// at once never yield to the loop. They still check for cancellation. For short sections that
// must not let other tasks in; a long one starves timers, I/O and every other task.
template <class T>
Task<T> unconstrained(Task<T> task) {
  struct Lifted {
    detail::TaskBase& owner;
    explicit Lifted(detail::TaskBase& t) noexcept : owner(t) { owner.enter_unconstrained(); }
    Lifted(const Lifted&) = delete;
    ~Lifted() { owner.leave_unconstrained(); }
  } lifted(detail::this_task());
  co_return co_await std::move(task);
}

}  // namespace awith
