// The async context manager protocol and async_with (Python's `async with`).
//
// THE PROTOCOL. A type M is an async context manager when, for an lvalue m:
//   m.aenter()                     is awaitable; its result is bound to the body (often M& itself,
//                                  or void when there is nothing to bind, like a lock);
//   m.aexit(std::exception_ptr e)  is awaitable; e is the body's exception (null on success). It
//                                  yields bool (true = suppress e, as __aexit__ returning True) or
//                                  void (never suppresses).
// async_with guarantees: aexit runs exactly once if aenter succeeded — on success, on exception
// and on cancellation — inside a cleanup scope (docs/design.md): the cancellation that is
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
#include "awith/borrowing_task.hpp"
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

// A prvalue manager is owned by the async_with frame; an lvalue one is borrowed, and so is a
// temporary that cannot be moved (it lives until the end of the caller's full expression).
template <class M>
inline constexpr bool borrows_temporary_v =
    !std::is_lvalue_reference_v<M> && !std::is_move_constructible_v<std::remove_cvref_t<M>>;
template <class M>
using stored_t = std::conditional_t<std::is_lvalue_reference_v<M> || borrows_temporary_v<M>,
                                    std::reference_wrapper<std::remove_reference_t<M>>, std::remove_cvref_t<M>>;
template <class M>
stored_t<M> store(M&& manager) {
  if constexpr (std::is_lvalue_reference_v<M> || borrows_temporary_v<M>) {
    return stored_t<M>(manager);
  } else {
    return stored_t<M>(std::forward<M>(manager));
  }
}
// The Task of a block that borrows a temporary manager must be awaited in the caller's expression.
template <bool Borrows, class T>
auto borrowing_if(Task<T> task) {
  if constexpr (Borrows) {
    return BorrowingTask<T>(std::move(task));
  } else {
    return task;
  }
}
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
  constexpr bool borrows = (borrows_temporary_v<std::tuple_element_t<I, std::tuple<A...>>> || ...);
  return borrowing_if<borrows>(
      with_many(std::decay_t<std::tuple_element_t<last, std::tuple<A...>>>(std::get<last>(std::move(args))),
                store<std::tuple_element_t<I, std::tuple<A...>>>(
                    std::forward<std::tuple_element_t<I, std::tuple<A...>>>(std::get<I>(args)))...));
}

}  // namespace detail

// co_await async_with(manager, body): Python's `async with manager as v: body(v)`.
// body is a callable taking the bound value (or nothing) and returning a Task<R>; it is kept alive
// by async_with, so a capturing lambda is safe. The result is R, or std::optional<R> when the
// manager can suppress (aexit yields bool): empty when the body's exception was suppressed.
// async_with(m1, m2, ..., body) enters left to right and exits right to left, like nested blocks;
// the body receives every bound value in order.
//
// Ownership: a temporary manager that can be moved (TaskGroup(), timeout(1s), a ClientSession) is
// moved into the block, and the result is a Task that may be stored and awaited later. An lvalue
// manager is borrowed. A temporary that cannot be moved (Barrier(2)) is borrowed for the caller's
// full expression: the result is then a BorrowingTask, awaited in that expression —
// `co_await async_with(Barrier(2), body)` — and never stored.
template <class M, class B>
  requires AsyncManager<std::remove_reference_t<M>>
auto async_with(M&& manager, B&& body) {
  return detail::borrowing_if<detail::borrows_temporary_v<M>>(
      detail::with_single(detail::store<M>(std::forward<M>(manager)), std::decay_t<B>(std::forward<B>(body))));
}
template <class... A>
  requires(sizeof...(A) >= 3)
auto async_with(A&&... args) {
  return detail::with_many_from(std::forward_as_tuple(std::forward<A>(args)...),
                                std::make_index_sequence<sizeof...(A) - 1>());
}

}  // namespace awith
