// Generator-based async context managers (Python's @asynccontextmanager): a coroutine whose code
// before `co_yield` is the enter phase and whose code after it is the exit phase.
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <type_traits>
#include <utility>
#include <variant>

#include "awith/async_with.hpp"
#include "awith/errors.hpp"
#include "awith/task.hpp"

namespace awith {

// The return type of a generator-based manager (Python's @asynccontextmanager):
// snippet: tests/snippets/headers.cpp#open_session
//
//   AsyncContextManager<Session> open_session() {
//     Session s = co_await connect();     // setup (runs at aenter)
//     std::exception_ptr error;
//     try {
//       co_yield s;                       // the body runs here; its exception is rethrown here
//     } catch (...) {                     // keep it (here), translate it, or drop it (= suppress)
//       error = std::current_exception();
//     }
//     co_await s.close();                 // cleanup (runs at aexit, inside a cleanup scope)
//     if (error) std::rethrow_exception(error);
//   }
//
// Calling the function runs nothing; the manager is single-use.
//
// What aexit does, as contextlib's asynccontextmanager (CPython 3.12):
//   - body succeeded, generator finished: nothing is raised;
//   - body raised E, generator let E out (or rethrew it): E propagates, the same object;
//   - body raised E, generator finished without raising: E is suppressed (the block's result is
//     empty, execution continues after it); for a CancelledError the task's next await raises
//     again (level-triggered cancellation) unless it calls uncancel();
//   - body raised E, generator raised another exception X: X propagates (nest E in it with
//     std::throw_with_nested to keep it, Python's `raise X from E`);
//   - generator yielded again after a successful body: RuntimeError("generator didn't stop");
//   - generator yielded again after the body raised E: RuntimeError("generator didn't stop after
//     athrow()") with E as its nested exception — except when E is a CancelledError: then a
//     CancelledError with E's message propagates (a cancellation stays a cancellation, the task
//     still ends cancelled), its nested exception being that RuntimeError, which nests E
//     (CancelledError is not polymorphic: reach it with `catch (const std::nested_exception&)`).
// A generator that yielded again is closed at once: its frame is destroyed, which runs its locals'
// destructors. C++ has no GeneratorExit to throw in at that co_yield, so catch blocks and awaits
// after it do not run. On every other path the frame is destroyed with the manager.
template <class T>
class [[nodiscard]] AsyncContextManager {
 public:
  // AsyncContextManager<void> yields nothing: `co_yield {};` (Python's bare `yield`).
  using Yielded = std::conditional_t<std::is_void_v<T>, std::monostate, std::remove_reference_t<T>>;
  using Bound = std::conditional_t<std::is_void_v<T>, void, Yielded&>;

  struct promise_type : detail::PromiseBase {
    Yielded* yielded = nullptr;
    std::exception_ptr thrown_in;  // the body's exception, rethrown at the co_yield
    std::coroutine_handle<> waiter;
    int yields = 0;

    AsyncContextManager get_return_object() noexcept {
      return AsyncContextManager(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    struct YieldAwaiter {
      promise_type* p;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept { return p->waiter; }
      void await_resume() const {
        if (p->thrown_in) std::rethrow_exception(p->thrown_in);
      }
    };
    YieldAwaiter yield_value(Yielded& v) noexcept {
      yielded = std::addressof(v);
      ++yields;
      return YieldAwaiter{this};
    }
    YieldAwaiter yield_value(Yielded&& v) noexcept { return yield_value(v); }
    struct FinalAwaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) const noexcept {
        return h.promise().waiter;
      }
      void await_resume() const noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
  };
  using handle_type = std::coroutine_handle<promise_type>;

  explicit AsyncContextManager(handle_type h) noexcept : coro_(h) {}
  AsyncContextManager(AsyncContextManager&& o) noexcept : coro_(std::exchange(o.coro_, {})), state_(o.state_) {}
  AsyncContextManager& operator=(AsyncContextManager&&) = delete;
  ~AsyncContextManager() {
    if (!coro_) return;
    if (state_ == State::entered && detail::g_debug_enabled)
      detail::report_unclosed("an AsyncContextManager generator was destroyed while suspended at its co_yield "
                              "(entered, never exited)");
    coro_.destroy();
  }

  struct EnterAwaiter {
    AsyncContextManager* self;
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) noexcept {
      self->coro_.promise().waiter = h;
      return self->coro_;
    }
    Bound await_resume() {
      auto& p = self->coro_.promise();
      if (self->coro_.done()) {
        self->state_ = State::finished;
        p.rethrow_if_failed();
        throw RuntimeError("generator didn't yield");
      }
      self->state_ = State::entered;
      if constexpr (!std::is_void_v<T>) return *p.yielded;
    }
  };
  EnterAwaiter aenter() {
    if (!coro_ || state_ != State::fresh) throw RuntimeError("an AsyncContextManager can be entered only once");
    return EnterAwaiter{this};
  }

  struct ExitAwaiter {
    AsyncContextManager* self;
    std::exception_ptr error;
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) noexcept {
      auto& p = self->coro_.promise();
      p.waiter = h;
      p.thrown_in = error;
      return self->coro_;
    }
    bool await_resume() {
      self->state_ = State::finished;
      if (!self->coro_.done()) self->close_after_second_yield(error);
      auto& p = self->coro_.promise();
      if (p.exception) {
        if (p.exception == error) return false;  // the same exception: propagate it once
        std::rethrow_exception(p.exception);
      }
      return static_cast<bool>(error);  // finished normally after an exception: suppressed
    }
  };
  ExitAwaiter aexit(std::exception_ptr error) {
    if (state_ != State::entered) throw RuntimeError("AsyncContextManager exited without having been entered");
    return ExitAwaiter{this, std::move(error)};
  }

 private:
  [[noreturn]] void close_after_second_yield(const std::exception_ptr& error) {
    std::exchange(coro_, {}).destroy();
    if (!error) throw RuntimeError("generator didn't stop");
    try {
      std::rethrow_exception(error);
    } catch (const CancelledError& cancelled) {
      try {
        std::throw_with_nested(RuntimeError("generator didn't stop after athrow()"));
      } catch (...) {
        std::throw_with_nested(CancelledError(cancelled.message()));
      }
    } catch (...) {
      std::throw_with_nested(RuntimeError("generator didn't stop after athrow()"));
    }
  }

  enum class State : unsigned char { fresh, entered, finished };
  handle_type coro_;
  State state_ = State::fresh;
};

}  // namespace awith
