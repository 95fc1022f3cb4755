// Threads and the loop: to_thread / run_in_executor (work off the loop) and
// run_coroutine_threadsafe (work onto a loop from another thread).
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "awith/loop.hpp"
#include "awith/runtime.hpp"
#include "awith/tasks.hpp"

namespace awith {

namespace detail {

template <class R>
struct ThreadCallState {
  std::function<R()> fn;
  std::conditional_t<std::is_void_v<R>, char, std::optional<R>> value{};
  std::exception_ptr error;
  WaitSlot* waiter = nullptr;  // loop thread only
  bool done = false;           // loop thread only
};

template <class R>
struct ThreadCall : WaitSlot {
  std::shared_ptr<ThreadCallState<R>> state;
  explicit ThreadCall(std::function<R()> fn) : state(std::make_shared<ThreadCallState<R>>()) {
    state->fn = std::move(fn);
    Waiter::detach = [](Waiter* w) noexcept {
      static_cast<ThreadCall*>(w)->state->waiter = nullptr;  // the thread's result is dropped
      return true;
    };
  }
  ThreadCall(const ThreadCall&) = delete;
  ~ThreadCall() {
    if (state->waiter == this) state->waiter = nullptr;
  }
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    if (!begin(h)) return false;
    state->waiter = this;
    // The worker never sees the loop: the executor posts the completion while the loop waits.
    task->loop().submit_to_executor(
        [st = state] {
          try {
            if constexpr (std::is_void_v<R>) {
              st->fn();
            } else {
              st->value.emplace(st->fn());
            }
          } catch (...) {
            st->error = std::current_exception();
          }
        },
        [st = state] {
          st->done = true;
          if (auto* w = std::exchange(st->waiter, nullptr)) w->wake();
        });
    return true;
  }
  R await_resume() {
    end();
    if (state->error) std::rethrow_exception(state->error);
    if constexpr (!std::is_void_v<R>) return std::move(*state->value);
  }
};

}  // namespace detail

// Runs f() on the loop's default executor (a bounded thread pool) and awaits its result
// (asyncio.to_thread). Cancelling the awaiting task stops the wait; the thread finishes its call
// and the result is discarded, as in asyncio.
template <class F, class R = std::invoke_result_t<F&>>
detail::ThreadCall<R> to_thread(F f) {
  return detail::ThreadCall<R>(std::function<R()>(std::move(f)));
}
// loop.run_in_executor(None, f).
template <class F, class R = std::invoke_result_t<F&>>
detail::ThreadCall<R> run_in_executor(F f) {
  return to_thread(std::move(f));
}

// The result of run_coroutine_threadsafe, usable from any thread (concurrent.futures.Future).
template <class T>
class ConcurrentFuture {
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::conditional_t<std::is_void_v<T>, char, std::optional<T>> value{};
    std::exception_ptr error;
    EventLoop* loop = nullptr;
    TaskHandle<T> task;  // loop thread only
  };

 public:
  ConcurrentFuture() : shared_(std::make_shared<Shared>()) {}

  bool done() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->done;
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    std::unique_lock lock(shared_->mutex);
    return shared_->cv.wait_for(lock, d, [&] { return shared_->done; });
  }
  // Blocks until the task is done; returns its value or rethrows (CancelledError if cancelled).
  T get() {
    std::unique_lock lock(shared_->mutex);
    shared_->cv.wait(lock, [&] { return shared_->done; });
    if (shared_->error) std::rethrow_exception(shared_->error);
    if constexpr (!std::is_void_v<T>) return std::move(*shared_->value);
  }
  // Asks the loop to cancel the task (thread-safe).
  void cancel() {
    auto s = shared_;
    s->loop->call_soon_threadsafe([s] {
      if (s->task) s->task.cancel();
    });
  }

 private:
  template <class U>
  friend ConcurrentFuture<U> run_coroutine_threadsafe(Task<U> task, EventLoop& loop);
  std::shared_ptr<Shared> shared_;
};

// Submits a task to `loop` from another thread; the returned future is completed from the loop.
template <class T>
ConcurrentFuture<T> run_coroutine_threadsafe(Task<T> task, EventLoop& loop) {
  ConcurrentFuture<T> fut;
  auto s = fut.shared_;
  s->loop = &loop;
  auto holder = std::make_shared<Task<T>>(std::move(task));
  loop.call_soon_threadsafe([s, holder] {
    s->task = create_task(std::move(*holder));
    s->task.add_done_callback([s](TaskHandle<T>& h) {
      std::lock_guard lock(s->mutex);
      try {
        if constexpr (std::is_void_v<T>) {
          h.result();
        } else {
          s->value.emplace(h.result());
        }
      } catch (...) {
        s->error = std::current_exception();
      }
      s->done = true;
      s->task = {};
      s->cv.notify_all();
    });
  });
  return fut;
}

}  // namespace awith
