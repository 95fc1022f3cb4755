#include "awith/runtime.hpp"

#include <algorithm>

#include "awith/tasks.hpp"

namespace awith {
namespace detail {

thread_local constinit StepBudget::State StepBudget::state{0, 0, false};

namespace {
// A yielded task has nothing registered anywhere: a cancellation just interrupts the yield.
bool detach_yield(Waiter*) noexcept { return true; }
Waiter g_yield_waiter{&detach_yield};

bool any_scope_cancelled(const Scope* from) noexcept {
  for (const Scope* s = from; s; s = s->parent)
    if (s->cancel_stamp != 0) return true;
  return false;
}
}  // namespace

TaskBase::TaskBase(EventLoop& loop, std::coroutine_handle<> root, SourceLocation where) noexcept
    : loop_(&loop), resume_(root), where_(where) {
  own_scope_.task = this;
  top_ = &own_scope_;
  loop.register_task(this);
}

TaskBase::~TaskBase() {
  if (exception_ && !ended_cancelled_ && !retrieved_) {
    try {
      ExceptionContext context("Task exception was never retrieved", exception_, describe());
      if (auto* running = EventLoop::current()) {
        running->call_exception_handler(context);
      } else {
        EventLoop::default_exception_handler(context);
      }
    } catch (...) {  // building the report failed (out of memory): a destructor must not throw
    }
  }
}

std::string TaskBase::describe() const {
  std::string file = where_.file;
  auto slash = file.find_last_of('/');
  if (slash != std::string::npos) file = file.substr(slash + 1);
  return "task created at " + file + ":" + std::to_string(where_.line) + " in " + where_.function;
}

const std::string& TaskBase::cancel_message() const noexcept {
  static const std::string empty;
  return cancel_message_ ? *cancel_message_ : empty;
}

bool TaskBase::cancel(std::string message) {
  if (done()) return false;
  if (cancel_requests_ < UINT16_MAX) ++cancel_requests_;
  if (!message.empty()) cancel_message_ = std::make_unique<std::string>(std::move(message));
  own_scope_.request_cancel();
  return true;
}

int TaskBase::uncancel() noexcept {
  if (cancel_requests_ > 0 && --cancel_requests_ == 0) own_scope_.cancel_stamp = 0;
  return cancel_requests_;
}

bool TaskBase::cancel_visible() const noexcept { return visible_cancelled_scope(top_) != nullptr; }

bool TaskBase::checkpoint_passes() noexcept {
  auto& st = StepBudget::state;
  AwaitObserver* observer = loop_->await_observer();
  if (observer) observer->on_await(*this);
  st.remaining += st.banked;
  st.banked = 0;
  if (maybe_cancelled_) {
    if (cancel_visible()) return false;
    // A request hidden by a cleanup scope stays in the stack: keep checking at awaits that always
    // check; leaving that scope forces the fast path back through the full check.
    maybe_cancelled_ = any_scope_cancelled(top_);
  }
  st.must_check = maybe_cancelled_ || observer;
  if (observer) {  // every await must come back here to be observed
    st.banked = st.remaining;
    st.remaining = 0;
  }
  return true;
}

void TaskBase::note_scope_change(bool cancelled) noexcept {
  if (cancelled) maybe_cancelled_ = true;
  if (maybe_cancelled_ && loop_->current_task() == this) StepBudget::force_check();
}

void TaskBase::yield_then_retry(std::coroutine_handle<> h, bool (*retry)(void*) noexcept, void* arg) noexcept {
  resume_ = h;
  waiter_ = &g_yield_waiter;
  retry_ = retry;
  retry_arg_ = arg;
  schedule();
}

void TaskBase::enter_unconstrained() noexcept {
  if (unconstrained_++ == 0 && loop_->current_task() == this) {
    auto& st = StepBudget::state;
    (st.must_check ? st.banked : st.remaining) = INT_MAX / 2;
  }
}

void TaskBase::leave_unconstrained() noexcept {
  if (--unconstrained_ == 0 && loop_->current_task() == this) {
    auto& st = StepBudget::state;
    int budget = loop_->task_budget();
    st.remaining = std::min(st.remaining, st.must_check ? 0 : budget);
    st.banked = std::min(st.banked, budget);
  }
}

Scope* TaskBase::visible_cancelled_scope(Scope* from) const noexcept {
  std::uint64_t barrier = 0;
  for (Scope* s = from; s; s = s->parent) {
    if (s->cancel_stamp > barrier) return s;
    if (s->shielded) return nullptr;
    barrier = std::max(barrier, s->barrier);
  }
  return nullptr;
}

TimePoint TaskBase::effective_deadline() const noexcept {
  TimePoint nearest = TimePoint::max();
  std::uint64_t barrier = 0;
  for (const Scope* s = top_; s;) {
    if (s->cancel_stamp == 0 || s->cancel_stamp > barrier) nearest = std::min(nearest, s->deadline);
    if (s->shielded) break;
    barrier = std::max(barrier, s->barrier);
    // Below a task's own scope: the scopes around the task group that runs it.
    s = s->parent ? s->parent : (s->task ? s->task->inherited_ : nullptr);
  }
  return nearest;
}

void TaskBase::on_cancel_request() noexcept {
  if (!waiter_ || !cancel_visible()) return;
  Waiter* w = waiter_;
  waiter_ = nullptr;
  if (w->detach(w)) {
    mark_interrupted();
    schedule();
  } else {
    note_delivered();  // an uninterruptible wait passes the request on to what it awaits
  }
}

void TaskBase::run() {
  scheduled_ = false;
  waiter_ = nullptr;
  if (done()) return;
  if (!started_) {
    started_ = true;
    if (cancel_visible()) {  // cancelled before its first step: the body never runs (asyncio)
      destroy_frame();
      finish(std::make_exception_ptr(CancelledError(cancel_message())));
      return;
    }
  }
  TaskBase* previous = loop_->current_task();
  loop_->set_current_task(this);
  add_ref();
  AwaitObserver* observer = loop_->await_observer();
  int budget = unconstrained_ ? INT_MAX / 2 : loop_->task_budget();
  bool check = maybe_cancelled_ || observer;
  auto& st = StepBudget::state;
  st = {check ? 0 : budget, check ? budget : 0, check};
  bool resume = true;
  if (retry_) [[unlikely]] {  // a yielded operation: complete it or register its wait first
    auto retry = std::exchange(retry_, nullptr);
    if (!interrupted_) resume = retry(retry_arg_);
  }
  if (resume) resume_.resume();
  st = {0, 0, false};
  loop_->set_current_task(previous);
  if (!done() && coroutine_done()) take_result();
  if (observer) observer->on_step_end(*this);
  release();
}

void TaskBase::finish(std::exception_ptr e) noexcept {
  exception_ = std::move(e);
  ended_cancelled_ = exception_ && is_cancelled_error(exception_);
  phase_ = TaskPhase::done;
  destroy_frame();
  loop_->unregister_task(this);
  while (completions_) {
    CompletionNode* n = completions_;
    remove_completion(n);
    n->notify(n);
  }
  release();  // the loop's reference
}

void TaskBase::add_completion(CompletionNode* n) noexcept {
  if (!completions_) {
    n->next = n->prev = n;
    completions_ = n;
    return;
  }
  CompletionNode* tail = completions_->prev;
  n->prev = tail;
  n->next = completions_;
  tail->next = n;
  completions_->prev = n;
}

void TaskBase::remove_completion(CompletionNode* n) noexcept {
  if (!n->next) return;
  if (n->next == n) {
    completions_ = nullptr;
  } else {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    if (completions_ == n) completions_ = n->next;
  }
  n->next = n->prev = nullptr;
}

void Scope::request_cancel() noexcept {
  if (task) {
    cancel_stamp = task->loop().next_cancel_stamp();
    task->note_scope_change(true);
    task->on_cancel_request();
  } else if (auto* loop = EventLoop::current()) {
    cancel_stamp = loop->next_cancel_stamp();
  } else {
    cancel_stamp = 1;
  }
}

void Scope::enter(TaskBase* owner) noexcept {
  task = owner;
  parent = owner->top_scope();
  owner->set_top_scope(this);
  owner->note_scope_change(cancel_stamp != 0);
}

void Scope::exit() noexcept {
  if (!task) return;
  task->note_scope_change(false);  // leaving a shield or a cleanup scope may uncover a request
  if (task->top_scope() == this) {
    task->set_top_scope(parent);
  } else {
    for (Scope* s = task->top_scope(); s; s = s->parent) {
      if (s->parent == this) {
        s->parent = parent;
        break;
      }
    }
  }
  task = nullptr;
  parent = nullptr;
}

TaskBase& this_task() {
  auto* loop = EventLoop::current();
  TaskBase* t = loop ? loop->current_task() : nullptr;
  if (!t) throw RuntimeError("an awith awaitable was awaited outside of a running task");
  return *t;
}

bool is_cancelled_error(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const CancelledError&) {
    return true;
  } catch (...) {
    return false;
  }
}

bool SleepAwaiter::await_suspend(std::coroutine_handle<> h) {
  if (!begin(h)) return false;
  if (delay <= Duration::zero()) {
    task->schedule();  // sleep(0): to the back of the ready queue
  } else {
    task->loop().add_timer(this, task->loop().time() + delay);
  }
  return true;
}

void SleepAwaiter::on_fire(TimerNode* n) noexcept { static_cast<SleepAwaiter*>(n)->wake(); }

bool SleepAwaiter::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<SleepAwaiter*>(w);
  self->task->loop().remove_timer(self);
  return true;
}

}  // namespace detail

TaskRef current_task() { return TaskRef(&detail::this_task()); }

std::vector<TaskRef> all_tasks() {
  std::vector<TaskRef> out;
  for (auto* t = EventLoop::running().first_task(); t; t = t->next_live) out.emplace_back(t);
  return out;
}

}  // namespace awith
