// BorrowingTask<T>: what a combinator returns when it borrows a temporary of the caller's
// expression instead of owning it — an awaiter built in place that cannot be moved, such as
// q.get(), lock.acquire() or ev.wait(), or a manager such as Barrier(2).
//
// A temporary lives until the end of the full expression that created it, so the borrowing
// result must be awaited in that same expression:
// snippet: tests/snippets/headers.cpp#wait_for_borrowed
//
//   co_await wait_for(q.get(), 1s);          // fine: q.get() lives until the await has finished
//
// while `auto w = wait_for(q.get(), 1s); co_await w;` does not compile: q.get() would be gone at
// the semicolon, so awaiting the stored lvalue is refused.
//
// A BorrowingTask cannot be copied or moved, and only an rvalue can be awaited; `co_await
// std::move(w)` on a stored one would still compile and read a dead temporary — never write it.
#pragma once

#include <type_traits>
#include <utility>

#include "awith/task.hpp"

namespace awith {

template <class T>
class [[nodiscard]] BorrowingTask {
 public:
  explicit BorrowingTask(Task<T> task) noexcept : task_(std::move(task)) {}
  BorrowingTask(const BorrowingTask&) = delete;
  BorrowingTask& operator=(const BorrowingTask&) = delete;

  typename Task<T>::Awaiter operator co_await() && { return std::move(task_).operator co_await(); }
  // Declared with a plain return type so that concept checks see "not awaitable" without
  // instantiating the body; awaiting a stored one instantiates it and reports why.
  template <class U = T>
  void operator co_await() & {
    static_assert(!std::is_same_v<U, U>,
                  "awith: this awaitable borrows temporaries of the expression that created it "
                  "(wait_for(q.get(), 1s), gather(ev.wait(), ...), async_with(Barrier(2), ...)); "
                  "co_await it in that same expression instead of storing it");
  }

 private:
  Task<T> task_;
};

namespace detail {
template <class T>
inline constexpr bool is_borrowing_task_v = false;
template <class T>
inline constexpr bool is_borrowing_task_v<BorrowingTask<T>> = true;
}  // namespace detail

}  // namespace awith
