// asyncio.TaskGroup: structured concurrency. Leaving the group waits for every child; the first
// failure cancels the others and the body; failures are raised together as an ExceptionGroup.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "awith/awaitable.hpp"
#include "awith/cancel_scope.hpp"
#include "awith/exception_group.hpp"
#include "awith/runtime.hpp"
#include "awith/source_location.hpp"
#include "awith/task.hpp"
#include "awith/tasks.hpp"

namespace awith {

// Used with async_with:
// snippet: tests/snippets/headers.cpp#task_group
//
//   co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
//     auto a = tg.create_task(fetch(1));
//     tg.create_task(fetch(2));
//     co_return;
//   });  // both are done here, or the failures are raised as an ExceptionGroup
//
// No child outlives the block: the exit waits for every child, also when it is itself
// cancelled — a new cancellation cancels the children and the wait goes on until they are done.
// Cancelling the task that runs the block cancels the body and every child, and re-raises
// CancelledError (not an ExceptionGroup, unless a child failed meanwhile), as asyncio does.
class TaskGroup {
 public:
  TaskGroup() = default;
  TaskGroup(TaskGroup&& other) noexcept;  // only before it is entered
  TaskGroup& operator=(TaskGroup&&) = delete;
  ~TaskGroup();

  Ready<TaskGroup&> aenter();
  Task<void> aexit(std::exception_ptr error);

  // Starts `task` as a child. Throws RuntimeError if the group has not been entered, is shutting
  // down after a failure, or has finished (the task is then destroyed without running).
  template <class T>
  TaskHandle<T> create_task(Task<T> task, SourceLocation where = SourceLocation::current()) {
    check_accepting();
    auto handle = awith::create_task(std::move(task), where);
    adopt(handle.base());
    return handle;
  }
  template <detail::TaskFactory F>
  auto create_task(F f, SourceLocation where = SourceLocation::current()) {
    return create_task(detail::call_owned(std::move(f)), where);
  }
  // Any other awaitable, or a callable returning one, as awith::create_task takes them:
  // tg.create_task(handle), tg.create_task([&] { return q.get(); }).
  template <class A>
    requires(!detail::is_task_v<std::remove_cvref_t<A>> && !detail::TaskFactory<std::remove_cvref_t<A>>)
  auto create_task(A&& aw, SourceLocation where = SourceLocation::current()) {
    if constexpr (detail::AwaitableFactory<std::remove_cvref_t<A>>) {
      return create_task(detail::await_built(std::decay_t<A>(std::forward<A>(aw))), where);
    } else {
      return create_task(detail::owning_task(std::forward<A>(aw)), where);
    }
  }

  std::size_t running() const noexcept { return running_; }
  std::string describe() const;

 private:
  // Learns that a child finished; the group handles it from the ready queue, as asyncio's done
  // callbacks run (so siblings already scheduled run before the group reacts to a failure).
  struct Child final : detail::CompletionNode, detail::Runnable {
    void run() override;
    TaskGroup* group = nullptr;
    detail::TaskBase* task = nullptr;
    Child* next_child = nullptr;
    Child* prev_child = nullptr;
    static void* operator new(std::size_t n) { return detail::FramePool::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { detail::FramePool::deallocate(p, n); }
  };
  struct ChildrenWait : detail::WaitSlot {
    TaskGroup* group;
    explicit ChildrenWait(TaskGroup* g) noexcept : group(g) { Waiter::detach = &on_detach; }
    ChildrenWait(const ChildrenWait&) = delete;
    ~ChildrenWait();
    bool await_ready() const noexcept { return group->running_ == 0; }
    bool await_suspend(std::coroutine_handle<> h);
    void await_resume() { end(); }
    static bool on_detach(detail::Waiter* w) noexcept;
  };
  enum class State : unsigned char { fresh, entered, exiting, finished };

  void check_accepting() const;
  void adopt(detail::TaskBase* task);
  void abort() noexcept;
  static void on_child_done(detail::CompletionNode* n) noexcept;

  detail::DeadlineScope body_;
  detail::TaskBase* parent_ = nullptr;
  // The parent's scope around the group: the deadlines of the children continue there (the body's
  // scope is left before the children are awaited, the scopes around it are not).
  detail::Scope* around_ = nullptr;
  Child* children_ = nullptr;  // running children
  std::size_t running_ = 0;
  std::vector<std::exception_ptr> errors_;
  ChildrenWait* waiter_ = nullptr;
  State state_ = State::fresh;
  bool aborting_ = false;
  bool cancelled_by_new_request_ = false;
};

}  // namespace awith
