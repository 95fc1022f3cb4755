// The per-task runtime state and the contract every awith awaitable follows.
//
// THE SUSPENSION CONTRACT (every awaitable that can wait implements exactly this):
//   1. In await_suspend, call WaitSlot::begin(h). It returns false when a visible scope is already
//      cancelled: the awaitable must then not register anywhere, and await_resume throws.
//   2. Otherwise register with the event source, which later calls WaitSlot::wake() once.
//   3. If the task is cancelled meanwhile, the runtime calls the slot's detach(): the awaitable
//      unregisters from the event source (it will never be woken) and returns true; or it returns
//      false to keep waiting uninterruptibly (awaiting a task: the awaited task is cancelled and the
//      wait ends when it finishes, as in asyncio).
//   4. await_resume first calls WaitSlot::end(), which throws CancelledError if the wait was
//      interrupted, then returns the result.
// A wake-up that reached the task before a cancel is never lost: the task resumes with the result
// and the cancellation is raised at its next suspension point (level-triggered).
//
// SCOPES. Each task has a stack of scopes (its own, timeouts, task-group bodies, cancel scopes,
// cleanup scopes). A scope is cancelled by stamping it with a fresh, loop-wide increasing number.
// A suspension point sees the scopes from the innermost outward, stopping after a shielded one;
// a cleanup scope hides the requests stamped before it began (docs/design.md, rules 1-7).
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include "awith/source_location.hpp"
#include <string>

#include "awith/errors.hpp"
#include "awith/loop.hpp"

namespace awith::detail {

class TaskBase;

struct Scope {
  Scope* parent = nullptr;
  TaskBase* task = nullptr;
  std::uint64_t cancel_stamp = 0;  // 0: not cancelled; else the stamp of the latest request
  std::uint64_t barrier = 0;       // cleanup scope: requests stamped <= barrier are hidden inside
  bool shielded = false;

  bool cancel_requested() const noexcept { return cancel_stamp != 0; }
  // Records a cancel request and interrupts the task's wait if the request is visible there.
  void request_cancel() noexcept;
  // Pushes this scope onto the current task's stack / removes it (from anywhere in the stack).
  void enter(TaskBase* owner) noexcept;
  void exit() noexcept;
};

// The registration of one interruptible wait (see the contract above).
struct Waiter {
  bool (*detach)(Waiter*) = nullptr;
};

// A node in a task's completion list: awaiters and done callbacks.
struct CompletionNode {
  CompletionNode* next = nullptr;
  CompletionNode* prev = nullptr;
  void (*notify)(CompletionNode*) = nullptr;
};

enum class TaskPhase : std::uint8_t { pending, done };

class TaskBase : public Runnable {
 public:
  TaskBase(EventLoop& loop, std::coroutine_handle<> root, SourceLocation where) noexcept;
  TaskBase(const TaskBase&) = delete;
  TaskBase& operator=(const TaskBase&) = delete;

  EventLoop& loop() const noexcept { return *loop_; }
  bool done() const noexcept { return phase_ == TaskPhase::done; }
  bool cancelled() const noexcept { return done() && ended_cancelled_; }

  // asyncio Task.cancel / cancelling / uncancel, with the 3.11 counting.
  bool cancel(std::string message = {});
  int cancelling() const noexcept { return cancel_requests_; }
  int uncancel() noexcept;
  const std::string& cancel_message() const noexcept;

  // --- scopes and waits -------------------------------------------------------------------------
  Scope* top_scope() const noexcept { return top_; }
  void set_top_scope(Scope* s) noexcept { top_ = s; }
  Scope& own_scope() noexcept { return own_scope_; }
  // Whether a suspension point here would see a cancelled scope (rule 1 with rule 3's barriers).
  bool cancel_visible() const noexcept;
  // The innermost scope whose request is visible from `from` outward, or nullptr.
  Scope* visible_cancelled_scope(Scope* from) const noexcept;
  void suspend(std::coroutine_handle<> h, Waiter* w) noexcept {
    resume_ = h;
    waiter_ = w;
  }
  void wake() noexcept {
    waiter_ = nullptr;
    schedule();
  }
  void on_cancel_request() noexcept;
  void mark_interrupted() noexcept { interrupted_ = true; }
  bool take_interrupted() noexcept {
    bool was = interrupted_;
    interrupted_ = false;
    return was;
  }
  void schedule() noexcept {
    if (!scheduled_) {
      scheduled_ = true;
      loop_->schedule(this);
    }
  }

  // --- completion -------------------------------------------------------------------------------
  void add_completion(CompletionNode* n) noexcept;
  void remove_completion(CompletionNode* n) noexcept;
  std::exception_ptr exception_ptr() const noexcept { return exception_; }
  void mark_retrieved() noexcept { retrieved_ = true; }
  SourceLocation where() const noexcept { return where_; }
  std::string describe() const;

  // Ends a task that can never run again (a loop shutting down in deadlock): destroys its frame
  // and finishes it as cancelled.
  void abandon() noexcept {
    if (done()) return;
    destroy_frame();
    finish(std::make_exception_ptr(CancelledError("abandoned at loop shutdown")));
  }

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) destroy_self();
  }

  TaskBase* next_live = nullptr;
  TaskBase* prev_live = nullptr;

 protected:
  virtual ~TaskBase();
  void run() final;
  virtual bool coroutine_done() const noexcept = 0;
  virtual void take_result() noexcept = 0;  // moves the result out of the finished frame
  virtual void destroy_frame() noexcept = 0;
  virtual void destroy_self() noexcept = 0;
  void finish(std::exception_ptr e) noexcept;

  EventLoop* loop_;
  std::coroutine_handle<> resume_;
  Scope own_scope_;
  Scope* top_ = nullptr;
  Waiter* waiter_ = nullptr;
  CompletionNode* completions_ = nullptr;  // circular list head
  std::exception_ptr exception_;
  std::unique_ptr<std::string> cancel_message_;
  SourceLocation where_;
  std::uint32_t refs_ = 1;  // the loop's reference while pending, dropped when done
  std::uint16_t cancel_requests_ = 0;
  TaskPhase phase_ = TaskPhase::pending;
  bool scheduled_ : 1 = false;
  bool started_ : 1 = false;
  bool interrupted_ : 1 = false;
  bool ended_cancelled_ : 1 = false;
  bool retrieved_ : 1 = false;
};

// The task running on this thread; throws RuntimeError when there is none.
TaskBase& this_task();
bool is_cancelled_error(const std::exception_ptr& e) noexcept;

// The standard interruptible wait slot (the contract's steps 1, 3, 4). Embed it in an awaitable.
struct WaitSlot : Waiter {
  TaskBase* task = nullptr;
  bool begin(std::coroutine_handle<> h) {
    task = &this_task();
    if (task->cancel_visible()) {
      task->mark_interrupted();
      return false;
    }
    task->suspend(h, this);
    return true;
  }
  // An uninterruptible wait: used where the runtime must wait for something to finish.
  void begin_shielded(std::coroutine_handle<> h) {
    task = &this_task();
    task->suspend(h, nullptr);
  }
  void end() {
    if (task && task->take_interrupted()) throw CancelledError(task->cancel_message());
  }
  void wake() noexcept { task->wake(); }
};

// Opens a cleanup scope for its lifetime (rule 3): requests made before it began are hidden from
// the awaits inside; later ones still interrupt them.
class CleanupScope {
 public:
  CleanupScope() : CleanupScope(this_task()) {}
  explicit CleanupScope(TaskBase& task) noexcept {
    scope_.barrier = task.loop().last_cancel_stamp();
    scope_.enter(&task);
  }
  ~CleanupScope() { scope_.exit(); }
  CleanupScope(const CleanupScope&) = delete;
  CleanupScope& operator=(const CleanupScope&) = delete;

 private:
  Scope scope_;
};

}  // namespace awith::detail
