#include "awith/gather.hpp"

namespace awith::detail {

GatherWait::GatherWait(std::vector<TaskBase*> tasks, bool return_exceptions, bool interruptible)
    : children_(tasks.size()), return_exceptions_(return_exceptions), interruptible_(interruptible) {
  Waiter::detach = &on_detach;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    auto& c = children_[i];
    c.owner = this;
    c.task = tasks[i];
    c.notify = &on_child_done;
    c.task->mark_retrieved();  // gather consumes every child's outcome
    if (!c.task->done()) {
      ++remaining_;
    } else if (!first_failure_ && c.task->exception_ptr()) {
      first_failure_ = c.task;
    }
  }
}

GatherWait::~GatherWait() { unregister_all(); }

void GatherWait::unregister_all() noexcept {
  for (auto& c : children_) {
    if (c.registered) c.task->remove_completion(&c);
    c.registered = false;
  }
}

bool GatherWait::ready() const noexcept {
  return remaining_ == 0 || (!return_exceptions_ && first_failure_);
}

namespace {
// What a yielded wait whose tasks were already done does when its task runs again: done tasks
// stay done, so it completes.
bool stays_complete(void*) noexcept { return true; }
}  // namespace

bool GatherWait::await_suspend(std::coroutine_handle<> h) {
  if (!interruptible_) {
    if (ready()) return false;
    begin_shielded(h);
  } else {
    switch (begin_op(h, ready(), &stays_complete, this)) {
      case Attempt::complete:
        return false;
      case Attempt::yielded:
        return true;
      case Attempt::interrupted:
        // Cancelled: as asyncio's gather, cancel every child and still wait for them all;
        // await_resume then raises CancelledError.
        cancel_requested_ = true;
        cancel_children();
        if (remaining_ == 0) return false;
        begin_shielded(h);
        break;
      case Attempt::wait:
        break;
    }
  }
  waiting_ = true;
  for (auto& c : children_) {
    if (!c.task->done()) {
      c.registered = true;
      c.task->add_completion(&c);
    }
  }
  return true;
}

void GatherWait::on_child_done(CompletionNode* n) noexcept {
  auto* c = static_cast<Child*>(n);
  auto* self = c->owner;
  c->registered = false;
  --self->remaining_;
  if (!self->first_failure_ && c->task->exception_ptr()) self->first_failure_ = c->task;
  if (!self->waiting_) return;
  bool wake = self->cancel_requested_ ? self->remaining_ == 0 : self->ready();
  if (wake) {
    self->waiting_ = false;
    self->wake();
  }
}

void GatherWait::cancel_children() noexcept {
  for (auto& c : children_)
    if (!c.task->done()) c.task->cancel();
}

bool GatherWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<GatherWait*>(w);
  self->cancel_requested_ = true;
  self->cancel_children();
  return false;  // keep waiting until every child has finished
}

TaskBase* GatherWait::await_resume() {
  end();
  unregister_all();
  if (cancel_requested_) throw CancelledError(task ? task->cancel_message() : std::string());
  return return_exceptions_ ? nullptr : first_failure_;
}

SetWait::SetWait(std::vector<TaskBase*> tasks, ReturnWhen when, std::optional<Duration> timeout)
    : children_(tasks.size()), when_(when), timeout_(timeout) {
  Waiter::detach = &on_detach;
  TimerNode::fire = &on_timeout;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    children_[i].owner = this;
    children_[i].task = tasks[i];
    children_[i].notify = &on_child_done;
  }
}

SetWait::~SetWait() {
  unregister_all();
  if (armed()) task->loop().remove_timer(this);
}

void SetWait::unregister_all() noexcept {
  for (auto& c : children_) {
    if (c.next) c.task->remove_completion(&c);
  }
}

bool SetWait::satisfied() const noexcept {
  bool all = true;
  for (const auto& c : children_) {
    if (!c.task->done()) {
      all = false;
      continue;
    }
    if (when_ == ReturnWhen::FIRST_COMPLETED) return true;
    if (when_ == ReturnWhen::FIRST_EXCEPTION && c.task->exception_ptr() && !c.task->cancelled()) return true;
  }
  return all;
}

bool SetWait::await_suspend(std::coroutine_handle<> h) {
  if (timeout_ && *timeout_ <= Duration::zero()) return false;
  switch (begin_op(h, satisfied(), &stays_complete, this)) {
    case Attempt::interrupted:
    case Attempt::complete:
      return false;
    case Attempt::yielded:
      return true;
    case Attempt::wait:
      break;
  }
  waiting_ = true;
  for (auto& c : children_)
    if (!c.task->done()) c.task->add_completion(&c);
  if (timeout_) task->loop().add_timer(this, task->loop().time() + *timeout_);
  return true;
}

void SetWait::on_child_done(CompletionNode* n) noexcept {
  auto* c = static_cast<Child*>(n);
  auto* self = c->owner;
  if (self->waiting_ && self->satisfied()) {
    self->waiting_ = false;
    self->unregister_all();
    if (self->armed()) self->task->loop().remove_timer(self);
    self->wake();
  }
}

void SetWait::on_timeout(TimerNode* n) noexcept {
  auto* self = static_cast<SetWait*>(n);
  self->waiting_ = false;
  self->unregister_all();
  self->wake();
}

bool SetWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<SetWait*>(w);
  self->waiting_ = false;
  self->unregister_all();
  if (self->armed()) self->task->loop().remove_timer(self);
  return true;
}

void SetWait::await_resume() { end(); }

}  // namespace awith::detail
