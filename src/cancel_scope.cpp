#include "awith/cancel_scope.hpp"

namespace awith {
namespace detail {

DeadlineScope::DeadlineScope(std::optional<TimePoint> deadline, bool shield) noexcept : deadline_(deadline) {
  scope_.shielded = shield;
  scope_.deadline = deadline.value_or(TimePoint::max());
  TimerNode::fire = &on_deadline;
}

DeadlineScope::DeadlineScope(DeadlineScope&& other)
    : TimerNode(), deadline_(other.deadline_), fired_(other.fired_) {
  if (other.entered()) throw InvalidStateError("a cancel scope cannot be moved once it has been entered");
  TimerNode::fire = &on_deadline;
  scope_.shielded = other.scope_.shielded;
  scope_.deadline = other.scope_.deadline;
  scope_.cancel_stamp = other.scope_.cancel_stamp;
  cancelled_before_ = other.cancelled_before_;
}

DeadlineScope::~DeadlineScope() {
  if (armed()) loop_->remove_timer(this);
  scope_.exit();
}

void DeadlineScope::enter() {
  if (loop_) throw RuntimeError("a cancel scope can be entered only once");
  TaskBase& task = this_task();
  loop_ = &task.loop();
  scope_.enter(&task);
  arm();
}

void DeadlineScope::arm() {
  if (armed()) loop_->remove_timer(this);
  if (deadline_ && !fired_) loop_->add_timer(this, *deadline_);
}

void DeadlineScope::set_deadline(std::optional<TimePoint> when) {
  deadline_ = when;
  scope_.deadline = when.value_or(TimePoint::max());
  fired_ = false;
  if (loop_ && scope_.task) arm();
}

void DeadlineScope::on_deadline(TimerNode* n) noexcept {
  auto* self = static_cast<DeadlineScope*>(n);
  self->fired_ = true;
  self->scope_.request_cancel();
}

bool DeadlineScope::leave(const std::exception_ptr& error) noexcept {
  if (armed()) loop_->remove_timer(this);
  TaskBase* task = scope_.task;
  Scope* outer = scope_.parent;
  bool own = scope_.cancel_requested();
  cancelled_before_ = own;
  scope_.exit();
  scope_.cancel_stamp = 0;
  if (!own || !error || !is_cancelled_error(error)) return false;
  // A shielded scope saw only its own cancellation; otherwise the outermost cancelled scope owns it.
  return scope_.shielded || !task || !task->visible_cancelled_scope(outer);
}

}  // namespace detail

std::optional<TimePoint> current_effective_deadline() {
  TimePoint when = detail::this_task().effective_deadline();
  if (when == TimePoint::max()) return std::nullopt;
  return when;
}

CancelScope CancelScope::after(Duration delay, bool shield) {
  return CancelScope(EventLoop::running().time() + delay, shield);
}

}  // namespace awith
