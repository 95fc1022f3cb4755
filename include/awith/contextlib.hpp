// contextlib's helpers for async context managers: nullcontext, aclosing, suppress; and
// raise_from (Python's `raise e from cause`) and try_finally (an async `finally:` block).
#pragma once

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "awith/awaitable.hpp"
#include "awith/runtime.hpp"
#include "awith/task.hpp"

namespace awith {

namespace detail {
template <class T>
struct task_value;
template <class T>
struct task_value<Task<T>> {
  using type = T;
};
}  // namespace detail

// Throws `e` with `cause` attached as its nested exception (Python's `raise e from cause`).
// std::rethrow_if_nested on the caught exception reaches the cause.
// A null cause (what aexit receives on success) throws `e` alone, as `raise e from None` would.
template <class E>
[[noreturn]] void raise_from(std::exception_ptr cause, E&& e) {
  if (!cause) throw std::forward<E>(e);
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
