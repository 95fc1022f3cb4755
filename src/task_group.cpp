#include "awith/task_group.hpp"

namespace awith {

TaskGroup::TaskGroup(TaskGroup&& other) noexcept {
  // Moving is how async_with(TaskGroup(), ...) takes ownership; a group in use has children
  // pointing at it and cannot move.
  if (other.state_ != State::fresh) std::terminate();
}

TaskGroup::~TaskGroup() {
  // Unreachable in correct use: aexit waits for every child. If the frame holding an entered
  // group is destroyed (its task abandoned at loop shutdown), detach the children from it.
  for (Child* c = children_; c;) {
    Child* next = c->next_child;
    if (c->task->done()) {
      c->group = nullptr;  // its completion is queued: it frees itself when it runs
    } else {
      c->task->remove_completion(c);
      c->task->release();
      delete c;
    }
    c = next;
  }
}

std::string TaskGroup::describe() const {
  std::string s = "<TaskGroup";
  if (running_) s += " tasks=" + std::to_string(running_);
  if (!errors_.empty()) s += " errors=" + std::to_string(errors_.size());
  if (aborting_) s += " cancelling";
  return s + ">";
}

void TaskGroup::check_accepting() const {
  switch (state_) {
    case State::fresh:
      throw RuntimeError("TaskGroup " + describe() + " has not been entered");
    case State::finished:
      throw RuntimeError("TaskGroup " + describe() + " is finished");
    default:
      if (aborting_) throw RuntimeError("TaskGroup " + describe() + " is shutting down");
  }
}

Ready<TaskGroup&> TaskGroup::aenter() {
  if (state_ != State::fresh) throw RuntimeError("TaskGroup " + describe() + " has already been entered");
  parent_ = &detail::this_task();
  body_.enter();
  around_ = body_.scope()->parent;
  state_ = State::entered;
  return {*this};
}

void TaskGroup::adopt(detail::TaskBase* task) {
  auto* c = new Child;
  c->group = this;
  c->task = task;
  c->notify = &on_child_done;
  c->next_child = children_;
  if (children_) children_->prev_child = c;
  children_ = c;
  ++running_;
  task->set_inherited_scope(around_);
  task->add_ref();  // released once the group has seen the outcome
  task->add_completion(c);
}

void TaskGroup::on_child_done(detail::CompletionNode* n) noexcept {
  auto* c = static_cast<Child*>(n);
  c->task->loop().schedule(c);
}

void TaskGroup::Child::run() {
  Child* c = this;
  TaskGroup* g = group;
  if (!g) {
    c->task->release();
    delete c;
    return;
  }
  if (c->prev_child) {
    c->prev_child->next_child = c->next_child;
  } else {
    g->children_ = c->next_child;
  }
  if (c->next_child) c->next_child->prev_child = c->prev_child;
  --g->running_;
  detail::TaskBase* task = c->task;
  delete c;
  task->mark_retrieved();
  if (auto e = task->exception_ptr(); e && !task->cancelled()) {
    g->errors_.push_back(e);
    if (!g->aborting_) g->abort();
  }
  task->release();
  if (g->running_ == 0 && g->waiter_) std::exchange(g->waiter_, nullptr)->wake();
}

void TaskGroup::abort() noexcept {
  aborting_ = true;
  for (Child* c = children_; c; c = c->next_child) c->task->cancel();  // no-op for finished ones
  if (state_ == State::entered) body_.cancel();  // the body is still running: cancel it too
}

TaskGroup::ChildrenWait::~ChildrenWait() {
  if (group->waiter_ == this) group->waiter_ = nullptr;
}

bool TaskGroup::ChildrenWait::await_suspend(std::coroutine_handle<> h) {
  if (group->cancelled_by_new_request_) {
    begin_shielded(h);
  } else if (!begin(h)) {
    return false;
  }
  group->waiter_ = this;
  return true;
}

// A new cancellation while the exit waits: cancel the children, keep waiting for them (no child
// outlives the group's block).
bool TaskGroup::ChildrenWait::on_detach(detail::Waiter* w) noexcept {
  auto* self = static_cast<ChildrenWait*>(w);
  TaskGroup* g = self->group;
  g->cancelled_by_new_request_ = true;
  if (!g->aborting_) g->abort();
  return false;
}

Task<void> TaskGroup::aexit(std::exception_ptr error) {
  state_ = State::exiting;
  bool body_error_is_cancel = error && detail::is_cancelled_error(error);
  // The body's cancellation is the group's own when the group cancelled the body (after a child
  // failed) and nothing outside is cancelled: then it folds into the shutdown (a cancelled scope
  // ends the CancelledError that leaves it).
  bool own_cancel = body_.leave(error);
  bool propagate_cancel = body_error_is_cancel && !own_cancel;
  if (error && !aborting_) abort();
  while (running_ > 0) {
    ChildrenWait wait(this);
    try {
      co_await wait;
    } catch (const CancelledError&) {
      // A visible cancellation before the wait began: treat it as a new request (cancel the
      // children and keep waiting, so none outlives the block).
      cancelled_by_new_request_ = true;
      if (!aborting_) abort();
    }
  }
  if (cancelled_by_new_request_) propagate_cancel = true;
  state_ = State::finished;
  if (propagate_cancel && errors_.empty()) {
    if (body_error_is_cancel) std::rethrow_exception(error);
    throw CancelledError(parent_->cancel_message());
  }
  if (error && !body_error_is_cancel) errors_.push_back(error);
  if (!errors_.empty()) {
    std::vector<std::exception_ptr> errors;
    errors.swap(errors_);
    throw ExceptionGroup("unhandled errors in a TaskGroup", std::move(errors));
  }
}

}  // namespace awith
