// Async context managers: the protocol, async_with, generator-based managers (@asynccontextmanager)
// and small helpers. AsyncExitStack is in exit_stack.hpp.
//
// THE PROTOCOL. A type M is an async context manager when, for an lvalue m:
//   m.aenter()                     is awaitable; its result is bound to the body (often M& itself,
//                                  or void when there is nothing to bind, like a lock);
//   m.aexit(std::exception_ptr e)  is awaitable; e is the body's exception (null on success). It
//                                  yields bool (true = suppress e, as __aexit__ returning True) or
//                                  void (never suppresses).
// async_with guarantees: aexit runs exactly once if aenter succeeded — on success, on exception
// and on cancellation — inside a cleanup scope (docs/design.md rule 3): the cancellation that is
// unwinding the body does not interrupt aexit's awaits, a new one does.
#pragma once

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>

#include "awith/awaitable.hpp"
#include "awith/errors.hpp"
#include "awith/runtime.hpp"
#include "awith/task.hpp"

namespace awith {

namespace detail {
// Debug-mode report of a manager that was entered and never exited (src/debug.cpp).
void report_unclosed(const char* what) noexcept;
}  // namespace detail

template <class M>
concept AsyncManager = requires(M& m, std::exception_ptr e) {
  { m.aenter() } -> Awaitable;
  { m.aexit(e) } -> Awaitable;
};

namespace detail {

template <class M>
using enter_result_t = await_result_t<decltype(std::declval<M&>().aenter())>;
template <class M>
using exit_result_t = await_result_t<decltype(std::declval<M&>().aexit(std::exception_ptr{}))>;
template <class M>
inline constexpr bool can_suppress_v = std::is_same_v<std::remove_cvref_t<exit_result_t<M>>, bool>;

// A prvalue manager is owned by the async_with frame; an lvalue one is borrowed.
template <class M>
using stored_t = std::conditional_t<std::is_lvalue_reference_v<M>, std::reference_wrapper<std::remove_reference_t<M>>,
                                    std::remove_cvref_t<M>>;
template <class S>
auto& unwrap(S& s) noexcept {
  if constexpr (requires { s.get(); typename S::type; }) {
    return s.get();
  } else {
    return s;
  }
}
template <class S>
using unwrapped_t = std::remove_reference_t<decltype(unwrap(std::declval<S&>()))>;

template <class T>
struct task_value;
template <class T>
struct task_value<Task<T>> {
  using type = T;
};
// What aenter binds, as an lvalue the body can take: the bound object itself, or std::monostate
// when aenter yields nothing.
template <class M>
using bound_t = std::conditional_t<std::is_void_v<enter_result_t<M>>, std::monostate,
                                   std::remove_reference_t<enter_result_t<M>>>;

// The body is called with the bound value when there is one and it accepts it.
template <class B, class V>
decltype(auto) call_body(B& body, V& bound) {
  if constexpr (std::is_invocable_v<B&, V&>) {
    return body(bound);
  } else {
    return body();
  }
}
// A body returns a Task (awaited) or, for a body that never waits, a plain value.
template <class X>
struct body_result {
  using type = X;
};
template <class T>
struct body_result<Task<T>> {
  using type = T;
};
template <class B, class M>
using body_call_t = decltype(call_body(std::declval<B&>(), std::declval<bound_t<M>&>()));
template <class B, class M>
using body_value_t = typename body_result<body_call_t<B, M>>::type;

template <class R, bool Suppressible>
using with_result_t = std::conditional_t<Suppressible && !std::is_void_v<R>, std::optional<R>, R>;

// Reports (debug mode) a frame destroyed between a successful aenter and its aexit: the block was
// abandoned mid-body (its task destroyed at loop shutdown), so the manager never cleaned up.
void report_entered_not_exited(const char* mangled_type) noexcept;
struct EnteredGuard {
  const char* manager = nullptr;
  bool exiting = false;
  ~EnteredGuard() {
    if (manager && !exiting && g_debug_enabled) report_entered_not_exited(manager);
  }
};

// One coroutine frame per block: aenter, the body, and aexit inside a cleanup scope all run here.
template <class S, class B, class M = unwrapped_t<S>, class R = body_value_t<B, M>>
Task<with_result_t<R, can_suppress_v<M>>> with_single(S stored, B body) {
  using E = enter_result_t<M>;
  using V = bound_t<M>;
  M& m = unwrap(stored);
  EnteredGuard guard;
  std::optional<V> owned;  // the bound value when aenter yields a value (or nothing)
  V* bound;
  if constexpr (std::is_void_v<E>) {
    co_await m.aenter();
    bound = &owned.emplace();
  } else if constexpr (std::is_reference_v<E>) {
    bound = &(co_await m.aenter());
  } else {
    bound = &owned.emplace(co_await m.aenter());
  }
  guard.manager = typeid(M).name();
  std::exception_ptr error;
  std::optional<std::conditional_t<std::is_void_v<R>, char, R>> result;
  try {
    if constexpr (!is_task_v<body_call_t<B, M>>) {
      if constexpr (std::is_void_v<R>) {
        call_body(body, *bound);
      } else {
        result.emplace(call_body(body, *bound));
      }
    } else if constexpr (std::is_void_v<R>) {
      co_await call_body(body, *bound);
    } else {
      result.emplace(co_await call_body(body, *bound));
    }
  } catch (...) {
    error = std::current_exception();
  }
  // The exit's own exception replaces the body's (use awith::raise_from to keep it as the cause).
  guard.exiting = true;
  bool suppressed = false;
  {
    CleanupScope cleanup;
    if constexpr (can_suppress_v<M>) {
      suppressed = static_cast<bool>(co_await m.aexit(error));
    } else {
      co_await m.aexit(error);
    }
  }
  if (error && !suppressed) std::rethrow_exception(error);
  if constexpr (std::is_void_v<R>) {
    co_return;
  } else if constexpr (can_suppress_v<M>) {
    co_return std::move(result);
  } else {
    co_return std::move(*result);
  }
}

template <class Slot, class Body, class Prev, class S, class... Rest>
Task<void> with_nested(Slot& slot, Body& body, Prev prev, S stored, Rest... rest) {
  using M = unwrapped_t<S>;
  auto inner = [&slot, &body, prev, &rest...](auto&... bound) -> Task<void> {
    auto args = std::tuple_cat(prev, std::tuple<decltype(bound)&...>(bound...));
    if constexpr (sizeof...(Rest) == 0) {
      using X = decltype(std::apply(body, args));
      if constexpr (std::is_void_v<typename Slot::value_type>) {
        if constexpr (is_task_v<X>) {
          co_await std::apply(body, args);
        } else {
          std::apply(body, args);
        }
        slot.done = true;
      } else if constexpr (is_task_v<X>) {
        slot.value.emplace(co_await std::apply(body, args));
      } else {
        slot.value.emplace(std::apply(body, args));
      }
    } else {
      co_await with_nested(slot, body, args, std::move(rest)...);
    }
  };
  if constexpr (std::is_void_v<enter_result_t<M>>) {
    co_await with_single(std::move(stored), [&inner]() { return inner(); });
  } else {
    co_await with_single(std::move(stored), [&inner](auto& bound) { return inner(bound); });
  }
}

template <class T>
struct ResultSlot {
  using value_type = T;
  std::optional<T> value;
};
template <>
struct ResultSlot<void> {
  using value_type = void;
  bool done = false;
};

template <class Body, class Tuple>
struct nested_body_value;
template <class Body, class... Ms>
struct nested_body_value<Body, std::tuple<Ms...>> {
  template <class E, bool = std::is_void_v<E>>
  struct arg {
    using type = std::tuple<>;
  };
  template <class E>
  struct arg<E, false> {
    using type = std::tuple<std::remove_reference_t<E>&>;
  };
  template <class M>
  using arg_t = typename arg<enter_result_t<M>>::type;
  using args = decltype(std::tuple_cat(std::declval<arg_t<Ms>>()...));
  template <class Tup>
  struct apply_result;
  template <class... A>
  struct apply_result<std::tuple<A...>> {
    using type = typename body_result<std::invoke_result_t<Body&, A...>>::type;
  };
  using type = typename apply_result<args>::type;
};

template <class Body, class... S>
Task<with_result_t<typename nested_body_value<Body, std::tuple<unwrapped_t<S>...>>::type,
                   (can_suppress_v<unwrapped_t<S>> || ...)>>
with_many(Body body, S... stored) {
  using R = typename nested_body_value<Body, std::tuple<unwrapped_t<S>...>>::type;
  ResultSlot<R> slot;
  co_await with_nested(slot, body, std::tuple<>(), std::move(stored)...);
  constexpr bool suppressible = (can_suppress_v<unwrapped_t<S>> || ...);
  if constexpr (std::is_void_v<R>) {
    co_return;
  } else if constexpr (suppressible) {
    co_return std::move(slot.value);
  } else {
    co_return std::move(*slot.value);
  }
}

template <class... A, std::size_t... I>
auto with_many_from(std::tuple<A&&...> args, std::index_sequence<I...>) {
  constexpr std::size_t last = sizeof...(A) - 1;
  return with_many(std::decay_t<std::tuple_element_t<last, std::tuple<A...>>>(std::get<last>(std::move(args))),
                   stored_t<std::tuple_element_t<I, std::tuple<A...>>>(
                       std::forward<std::tuple_element_t<I, std::tuple<A...>>>(std::get<I>(args)))...);
}

}  // namespace detail

// co_await async_with(manager, body): Python's `async with manager as v: body(v)`.
// body is a callable taking the bound value (or nothing) and returning a Task<R>; it is kept alive
// by async_with, so a capturing lambda is safe. The result is R, or std::optional<R> when the
// manager can suppress (aexit yields bool): empty when the body's exception was suppressed.
// async_with(m1, m2, ..., body) enters left to right and exits right to left, like nested blocks;
// the body receives every bound value in order.
template <class M, class B>
  requires AsyncManager<std::remove_reference_t<M>>
auto async_with(M&& manager, B&& body) {
  return detail::with_single(detail::stored_t<M>(std::forward<M>(manager)), std::decay_t<B>(std::forward<B>(body)));
}
template <class... A>
  requires(sizeof...(A) >= 3)
auto async_with(A&&... args) {
  return detail::with_many_from(std::forward_as_tuple(std::forward<A>(args)...),
                                std::make_index_sequence<sizeof...(A) - 1>());
}

// Throws `e` with `cause` attached as its nested exception (Python's `raise e from cause`).
// std::rethrow_if_nested on the caught exception reaches the cause.
template <class E>
[[noreturn]] void raise_from(std::exception_ptr cause, E&& e) {
  try {
    std::rethrow_exception(cause);
  } catch (...) {
    std::throw_with_nested(std::forward<E>(e));
  }
}

// try_finally(body, cleanup): runs body(), then always cleanup() — also when body throws or is
// cancelled — inside a cleanup scope, and rethrows body's exception. The async `finally:` block
// C++ lacks (co_await is not allowed in a catch block).
template <class B, class C>
auto try_finally(B body, C cleanup) -> decltype(body()) {
  std::exception_ptr error;
  using R = typename detail::task_value<decltype(body())>::type;
  std::optional<std::conditional_t<std::is_void_v<R>, char, R>> result;
  try {
    if constexpr (std::is_void_v<R>) {
      co_await body();
    } else {
      result.emplace(co_await body());
    }
  } catch (...) {
    error = std::current_exception();
  }
  {
    detail::CleanupScope scope;
    co_await cleanup();
  }
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}

// --- generator-based managers --------------------------------------------------------------------

// The return type of a generator-based manager (Python's @asynccontextmanager):
//
//   AsyncContextManager<Session> open_session() {
//     Session s = co_await connect();   // setup (runs at aenter)
//     try { co_yield s; }               // the body runs here; its exception is rethrown here
//     catch (...) { ... }               // translate, swallow (= suppress) or rethrow
//     co_await s.close();               // cleanup (runs at aexit, inside a cleanup scope)
//   }
//
// Calling the function runs nothing; the manager is single-use.
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
      auto& p = self->coro_.promise();
      self->state_ = State::finished;
      if (!self->coro_.done()) throw RuntimeError("generator didn't stop");
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
  enum class State : unsigned char { fresh, entered, finished };
  handle_type coro_;
  State state_ = State::fresh;
};

// nullcontext(value): binds value, does nothing on exit.
template <class T>
struct NullContext {
  T value;
  Ready<T&> aenter() noexcept { return {value}; }
  Ready<> aexit(std::exception_ptr) noexcept { return {}; }
};
template <class T>
NullContext<T> nullcontext(T value) {
  return NullContext<T>{std::move(value)};
}

// aclosing(obj): binds obj, awaits obj.aclose() on exit (contextlib.aclosing).
template <class T>
struct Aclosing {
  T& object;
  Ready<T&> aenter() noexcept { return {object}; }
  auto aexit(std::exception_ptr) { return object.aclose(); }
};
template <class T>
Aclosing<T> aclosing(T& object) {
  return Aclosing<T>{object};
}

namespace detail {
// Whether `error` holds an exception of one of the types E... (or derived from one).
template <class... E>
bool exception_is(const std::exception_ptr& error) {
  if constexpr (sizeof...(E) == 0) {
    return false;
  } else {
    return []<class First, class... Rest>(const std::exception_ptr& e, std::type_identity<First>,
                                          std::type_identity<Rest>...) {
      try {
        std::rethrow_exception(e);
      } catch (const First&) {
        return true;
      } catch (...) {
        return exception_is<Rest...>(e);
      }
    }(error, std::type_identity<E>()...);
  }
}
}  // namespace detail

// suppress<E...>(): swallows exceptions of the listed types (contextlib.suppress).
template <class... E>
struct Suppress {
  Ready<> aenter() noexcept { return {}; }
  Ready<bool> aexit(std::exception_ptr error) const { return {error && detail::exception_is<E...>(error)}; }
};
template <class... E>
Suppress<E...> suppress() {
  return {};
}

}  // namespace awith
