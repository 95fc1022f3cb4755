// AsyncExitStack: a dynamic number of exits, run LIFO (contextlib.AsyncExitStack).
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <concepts>
#include <type_traits>
#include <utility>
#include <vector>

#include "awith/awaitable.hpp"
#include "awith/async_with.hpp"
#include "awith/runtime.hpp"
#include "awith/task.hpp"

namespace awith {

class AsyncExitStack {
 public:
  // An exit: receives the exception in flight (null if none), yields true to suppress it.
  using Exit = std::function<Task<bool>(std::exception_ptr)>;

  AsyncExitStack() = default;
  AsyncExitStack(AsyncExitStack&&) noexcept = default;
  AsyncExitStack& operator=(AsyncExitStack&&) noexcept = default;
  ~AsyncExitStack();

  // Enters `manager` and registers its aexit; returns what aenter bound. A prvalue manager is
  // owned by the stack until its exit has run; an lvalue one is borrowed.
  template <class M>
    requires AsyncManager<std::remove_reference_t<M>>
  Task<detail::enter_result_t<std::remove_reference_t<M>>> enter_async_context(M&& manager) {
    using Plain = std::remove_cvref_t<M>;
    static_assert(std::is_lvalue_reference_v<M> || std::is_move_constructible_v<Plain>,
                  "enter_async_context(manager): the stack keeps a temporary manager after this expression, "
                  "and this one cannot be moved; pass a factory that builds it in place: "
                  "enter_async_context([&] { return Barrier(2); })");
    if constexpr (std::is_lvalue_reference_v<M>) {
      return enter_and_push(&manager, nullptr);
    } else {
      auto owned = std::make_shared<Plain>(std::forward<M>(manager));
      Plain* m = owned.get();
      return enter_and_push(m, std::move(owned));
    }
  }
  // The same for a manager the stack builds in place from make() (also one that cannot be moved);
  // the stack owns it until its exit has run.
  template <class F>
    requires(!AsyncManager<std::remove_reference_t<F>> && std::invocable<F&> &&
             AsyncManager<std::invoke_result_t<F&>>)
  Task<detail::enter_result_t<std::invoke_result_t<F&>>> enter_async_context(F&& make) {
    using Plain = std::invoke_result_t<F&>;
    std::shared_ptr<Plain> owned(new Plain(make()));
    Plain* m = owned.get();
    return enter_and_push(m, std::move(owned));
  }

  // Registers a callback f() -> Task<void>, awaited on exit; it cannot suppress.
  template <class F>
  void push_async_callback(F f) {
    exits_.push_back([f = std::move(f)](std::exception_ptr) mutable -> Task<bool> {
      co_await f();
      co_return false;
    });
  }
  // Registers f(std::exception_ptr) -> awaitable of bool (or void), like an aexit; or a manager
  // whose aexit is registered without entering it.
  template <class F>
  void push_async_exit(F f) {
    if constexpr (AsyncManager<F>) {
      auto owned = std::make_shared<F>(std::move(f));
      push_manager_exit(owned.get(), owned);
    } else {
      exits_.push_back([f = std::move(f)](std::exception_ptr e) mutable -> Task<bool> {
        if constexpr (std::is_void_v<await_result_t<decltype(f(e))>>) {
          co_await f(e);
          co_return false;
        } else {
          co_return static_cast<bool>(co_await f(e));
        }
      });
    }
  }
  // Registers a synchronous callback f().
  template <class F>
  void callback(F f) {
    exits_.push_back([f = std::move(f)](std::exception_ptr) mutable -> Task<bool> {
      f();
      co_return false;
    });
  }

  // Moves every registered exit to a new stack; this one is left empty.
  AsyncExitStack pop_all() noexcept;
  // Runs the exits now (LIFO), as leaving the stack without an exception does.
  Task<void> aclose();
  std::size_t size() const noexcept { return exits_.size(); }

  Ready<AsyncExitStack&> aenter() noexcept { return {*this}; }
  // Runs the exits LIFO: each sees the exception left by the ones after it; a suppression hides
  // the exception from the earlier ones; an exit's own exception replaces the one in flight.
  Task<bool> aexit(std::exception_ptr error);

 private:
  template <class M>
  Task<detail::enter_result_t<M>> enter_and_push(M* m, std::shared_ptr<void> owned) {
    if constexpr (std::is_void_v<detail::enter_result_t<M>>) {
      co_await m->aenter();
      push_manager_exit(m, std::move(owned));
    } else {
      decltype(auto) bound = co_await m->aenter();
      push_manager_exit(m, std::move(owned));
      co_return static_cast<detail::enter_result_t<M>>(bound);
    }
  }
  template <class M>
  void push_manager_exit(M* m, std::shared_ptr<void> owned) {
    exits_.push_back([m, owned = std::move(owned)](std::exception_ptr e) -> Task<bool> {
      if constexpr (detail::can_suppress_v<M>) {
        co_return static_cast<bool>(co_await m->aexit(e));
      } else {
        co_await m->aexit(e);
        co_return false;
      }
    });
  }
  std::vector<Exit> exits_;
};

}  // namespace awith
