// What "awaitable" means to awith's generic code, and the type an awaitable produces.
#pragma once

#include <coroutine>
#include <type_traits>
#include <utility>

namespace awith {

namespace detail {
template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(a)); }) {
    return operator co_await(std::forward<A>(a));
  } else {
    return std::forward<A>(a);
  }
}

}  // namespace detail

// An awaiter: await_ready, await_suspend and await_resume.
template <class W>
concept Awaiter = requires(W& w, std::coroutine_handle<> h) {
  { w.await_ready() } -> std::convertible_to<bool>;
  w.await_suspend(h);
  w.await_resume();
};

// Something co_await accepts: an awaiter, or a type with operator co_await.
template <class A>
concept Awaitable = requires(A&& a) {
  { detail::get_awaiter(std::forward<A>(a)) } -> Awaiter;
};

// The type of `co_await std::declval<A>()`.
template <class A>
using await_result_t = decltype(std::declval<decltype(detail::get_awaiter(std::declval<A>()))&>().await_resume());

// An awaiter that is ready at once with a value (or nothing): for aenter/aexit that need not wait.
template <class T = void>
struct Ready {
  T value;
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  T await_resume() { return std::forward<T>(value); }
};
template <>
struct Ready<void> {
  bool await_ready() const noexcept { return true; }
  void await_suspend(std::coroutine_handle<>) const noexcept {}
  void await_resume() const noexcept {}
};

}  // namespace awith
