// The per-task runtime state and the contract every awith awaitable follows.
//
// THE SUSPENSION CONTRACT (every awaitable that can wait implements exactly this):
//   1. In await_suspend, call WaitSlot::begin(h) (or begin_op for an operation that may complete
//      at once, below). It returns false when a visible scope is already cancelled: the awaitable
//      must then not register anywhere, and await_resume throws.
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
// CHECKPOINTS. An operation that sometimes waits is always a checkpoint, even when it could
// complete at once (an uncontended lock, a set event, a non-empty queue, buffered stream data, a
// finished task):
//   - await_ready takes the fast path only through StepBudget::take(): one decrement of a
//     thread-local counter. It is zero whenever the running task may see a cancellation (a scope
//     of it was cancelled, entered or left since the last full check) and when the budget is spent;
//   - otherwise await_suspend calls begin_op(h, can_complete_now, retry): the full check runs
//     first, before the operation takes anything; a visible cancellation interrupts it;
//   - each task step may complete `LoopOptions::task_budget` operations at once (default 128, as
//     tokio). The next one that could complete at once yields to the loop first (timers, I/O and
//     other ready tasks run), and is retried when the task runs again: it then completes, or
//     waits like any other wait. Nothing is taken before the yield, so nothing is lost or
//     duplicated. awith::unconstrained() lifts the budget for code that must not yield.
//
// SCOPES. Each task has a stack of scopes (its own, timeouts, task-group bodies, cancel scopes,
// cleanup scopes). A scope is cancelled by stamping it with a fresh, loop-wide increasing number.
// A suspension point sees the scopes from the innermost outward, stopping after a shielded one;
// a cleanup scope hides the requests its task had received before it began (docs/design.md).
#pragma once

#include <climits>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>

#include "awith/source_location.hpp"

#include "awith/errors.hpp"
#include "awith/loop.hpp"

namespace awith::detail {

class TaskBase;

// What the running task step may still do without a full checkpoint (see CHECKPOINTS above).
// Thread-local: one task step runs at a time on a thread. Outside a task step everything is zero,
// so an await there takes the slow path, which reports the missing task.
struct StepBudget {
  struct State {
    int remaining;    // operations that may complete at once without a full check
    int banked;       // budget set aside while every await must run the full check
    bool must_check;  // a cancellation may be visible, or an observer watches every await
  };
  static thread_local constinit State state;
  // The fast path of await_ready: true when the operation may complete without a full check.
  static bool take() noexcept {
    if (state.remaining <= 0) return false;
    --state.remaining;
    return true;
  }
  // A scope of the running task changed in a way that may make a cancellation visible: every
  // await runs the full check until it finds none.
  static void force_check() noexcept {
    state.banked += state.remaining;
    state.remaining = 0;
    state.must_check = true;
  }
};

// Sees every await point of the tasks of a loop: the engine of the cancellation sweeps. Installed
// with EventLoop::set_await_observer; while one is installed, every await takes the slow path.
struct AwaitObserver {
  // Before the cancellation check of an await (also one that will complete at once).
  virtual void on_await(TaskBase& task) = 0;
  // A task step returned to the loop: the task is suspended (fully registered) or done.
  virtual void on_step_end(TaskBase& task) = 0;

 protected:
  ~AwaitObserver() = default;
};

enum class Attempt : std::uint8_t {
  interrupted,  // a visible scope is cancelled: do not register; await_resume throws
  yielded,      // the budget is spent: the task yields, and retry runs when it is resumed
  complete,     // complete the operation now, without suspending
  wait,         // register the wait (the task is suspended on this slot)
};

struct Scope {
  Scope* parent = nullptr;
  TaskBase* task = nullptr;
  std::uint64_t cancel_stamp = 0;  // 0: not cancelled; else the stamp of the latest request
  std::uint64_t barrier = 0;       // cleanup scope: requests stamped <= barrier are hidden inside
  TimePoint deadline = TimePoint::max();  // when a deadline scope cancels it; max: never
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
  // Where the deadlines that bound this task continue below its own scope: the body of the task
  // group that runs it (whose enclosing scopes cancel the group, and so the task). Null otherwise.
  Scope* inherited_scope() const noexcept { return inherited_; }
  void set_inherited_scope(Scope* s) noexcept { inherited_ = s; }
  // The nearest deadline among the scopes that can cancel the running code (current_effective_deadline).
  TimePoint effective_deadline() const noexcept;
  // Whether a suspension point here would see a cancelled scope (levels, shields, cleanup barriers).
  bool cancel_visible() const noexcept;
  // The full check of a checkpoint (the slow path): reports the await to an observer, then
  // returns false when a cancellation is visible. Restores the step's budget otherwise.
  bool checkpoint_passes() noexcept;
  // A scope of this task was cancelled or entered while cancelled: checkpoints must look.
  void note_scope_change(bool cancelled) noexcept;
  // Suspends the task for one turn of the loop; when it runs again, retry(arg) is called first:
  // it returns true to resume the coroutine, false when it registered a wait instead.
  void yield_then_retry(std::coroutine_handle<> h, bool (*retry)(void*) noexcept, void* arg) noexcept;
  std::coroutine_handle<> resume_handle() const noexcept { return resume_; }
  // awith::unconstrained(): the budget does not apply while the depth is non-zero.
  void enter_unconstrained() noexcept;
  void leave_unconstrained() noexcept;
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
  // The wait is interrupted: await_resume raises CancelledError, which delivers every request
  // made so far.
  void mark_interrupted() noexcept {
    interrupted_ = true;
    note_delivered();
  }
  // Every request made so far reached the task's code (as CancelledError, or through the task it
  // awaits): a cleanup scope begun after this point hides them.
  void note_delivered() noexcept { delivered_stamp_ = loop_->last_cancel_stamp(); }
  std::uint64_t delivered_stamp() const noexcept { return delivered_stamp_; }
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
  Scope* inherited_ = nullptr;
  Waiter* waiter_ = nullptr;
  CompletionNode* completions_ = nullptr;  // circular list head
  std::exception_ptr exception_;
  std::unique_ptr<std::string> cancel_message_;
  SourceLocation where_;
  bool (*retry_)(void*) noexcept = nullptr;
  void* retry_arg_ = nullptr;
  std::uint64_t delivered_stamp_ = 0;  // see note_delivered
  std::uint32_t refs_ = 1;
  std::uint32_t unconstrained_ = 0;  // the loop's reference while pending, dropped when done
  std::uint16_t cancel_requests_ = 0;
  TaskPhase phase_ = TaskPhase::pending;
  bool scheduled_ : 1 = false;
  bool started_ : 1 = false;
  bool interrupted_ : 1 = false;
  bool ended_cancelled_ : 1 = false;
  bool retrieved_ : 1 = false;
  bool maybe_cancelled_ : 1 = false;  // some scope of the stack may be cancelled
};

// The task running on this thread; throws RuntimeError when there is none.
TaskBase& this_task();
bool is_cancelled_error(const std::exception_ptr& e) noexcept;

// The standard interruptible wait slot (the contract's steps 1, 3, 4). Embed it in an awaitable.
struct WaitSlot : Waiter {
  TaskBase* task = nullptr;
  // For a wait that always suspends.
  bool begin(std::coroutine_handle<> h) {
    task = &this_task();
    if (StepBudget::state.must_check && !task->checkpoint_passes()) [[unlikely]] {
      task->mark_interrupted();
      return false;
    }
    task->suspend(h, this);
    return true;
  }
  // For an operation that may complete at once (CHECKPOINTS above), from await_suspend after
  // await_ready declined. `retry` is called when a yielded task runs again (see attempt_op).
  Attempt begin_op(std::coroutine_handle<> h, bool can_complete, bool (*retry)(void*) noexcept, void* self) {
    task = &this_task();
    auto& st = StepBudget::state;
    if (st.must_check && !task->checkpoint_passes()) {
      task->mark_interrupted();
      return Attempt::interrupted;
    }
    if (!can_complete) {
      task->suspend(h, this);
      return Attempt::wait;
    }
    if (st.remaining > 0) {
      --st.remaining;
    } else if (st.banked > 0) {
      --st.banked;
    } else if (task->loop().others_could_run()) {
      task->yield_then_retry(h, retry, self);
      return Attempt::yielded;
    } else {
      st.remaining = task->loop().task_budget() - 1;  // a yield would only resume this task
    }
    return Attempt::complete;
  }
  // An uninterruptible wait: used where the runtime must wait for something to finish.
  void begin_shielded(std::coroutine_handle<> h) {
    task = &this_task();
    task->suspend(h, nullptr);
  }
  // Registers this slot as the task's wait again (a retried operation that must wait after all).
  void park() noexcept { task->suspend(task->resume_handle(), this); }
  void end() {
    if (task && task->take_interrupted()) throw CancelledError(task->cancel_message());
  }
  void wake() noexcept { task->wake(); }
};

// The await_suspend of an operation that may complete at once. Op derives from WaitSlot and has
//   bool can_complete() const;  // whether the operation would complete now
//   void complete();            // completes it (only when can_complete())
//   void enqueue() noexcept;    // registers the wait (the task is already suspended on the slot)
// and, when complete() can throw, a `std::exception_ptr error` that its await_resume rethrows.
template <class Op>
bool retry_op(void* p) noexcept {
  Op& op = *static_cast<Op*>(p);
  if (!op.can_complete()) {
    op.park();
    op.enqueue();
    return false;
  }
  if constexpr (noexcept(op.complete())) {
    op.complete();
  } else {
    try {
      op.complete();
    } catch (...) {
      op.error = std::current_exception();
    }
  }
  return true;
}
template <class Op>
bool attempt_op(Op& op, std::coroutine_handle<> h) {
  switch (op.begin_op(h, op.can_complete(), &retry_op<Op>, &op)) {
    case Attempt::interrupted:
      return false;
    case Attempt::yielded:
      return true;
    case Attempt::complete:
      op.complete();
      return false;
    case Attempt::wait:
      op.enqueue();
      return true;
  }
  return false;
}

// A checkpoint with nothing to wait for: throws CancelledError when a visible scope is cancelled,
// and spends one unit of the step's budget (yielding to the loop when it is spent).
struct CheckpointAwaiter : WaitSlot {
  bool await_ready() noexcept { return StepBudget::take(); }
  bool await_suspend(std::coroutine_handle<> h) { return attempt_op(*this, h); }
  void await_resume() { end(); }
  bool can_complete() const noexcept { return true; }
  void complete() noexcept {}
  void enqueue() noexcept {}
};

// Opens a cleanup scope for its lifetime: the requests the task has already received (the
// cancellation it is cleaning up after) are hidden from the awaits inside; later ones, and one
// that arrived but was never raised (the task was already woken when it came, and reached this
// cleanup without passing a checkpoint), still interrupt them, so no request is lost.
class CleanupScope {
 public:
  CleanupScope() : CleanupScope(this_task()) {}
  explicit CleanupScope(TaskBase& task) noexcept {
    scope_.barrier = task.delivered_stamp();
    scope_.enter(&task);
  }
  ~CleanupScope() { scope_.exit(); }
  CleanupScope(const CleanupScope&) = delete;
  CleanupScope& operator=(const CleanupScope&) = delete;

 private:
  Scope scope_;
};

}  // namespace awith::detail
