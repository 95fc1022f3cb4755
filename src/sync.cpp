#include "awith/sync.hpp"

namespace awith {
namespace detail {

bool ConditionWait::await_ready() const {
  if (!cond->locked()) throw RuntimeError("cannot wait on un-acquired lock");
  return false;
}

bool ConditionWait::await_suspend(std::coroutine_handle<> h) {
  cond->waiters_.bind_running_loop();
  if (!begin(h)) return false;  // cancelled: the lock stays held and await_resume raises
  phase = Phase::notify_wait;
  cond->waiters_.push_back(this);
  cond->lock_->hand_off();
  return true;
}

void ConditionWait::on_woken(WaitNode* n) noexcept {
  auto* self = static_cast<ConditionWait*>(n);
  if (self->phase == Phase::notify_wait) {
    // Notified: queue for the lock, which the notifier holds, instead of waking to find it taken.
    self->notified = true;
    self->phase = Phase::lock_wait;
    self->cond->lock_->waiters_.adopt_loop(self->task->loop());
    self->cond->lock_->waiters_.push_back(self);
    return;
  }
  self->phase = Phase::holding;
  self->wake();
}

// Cancelled while waiting: stop waiting for a notification, but never leave without the lock.
bool ConditionWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<ConditionWait*>(w);
  Lock& lock = *self->cond->lock_;
  if (self->phase == Phase::notify_wait) {
    self->cond->waiters_.remove(self);
    if (!lock.locked_) {
      lock.locked_ = true;
      self->phase = Phase::holding;
      return true;
    }
    self->phase = Phase::lock_wait;
    lock.waiters_.adopt_loop(self->task->loop());
    lock.waiters_.push_back(self);
  }
  return false;  // the re-acquire is uninterruptible; await_resume raises once it holds the lock
}

bool ConditionWait::await_resume() {
  phase = Phase::idle;
  end();
  if (task->cancel_visible()) {
    if (notified) cond->wake(1);  // asyncio 3.13: a waiter that fails passes its wake-up on
    throw CancelledError(task->cancel_message());
  }
  return true;
}

ConditionWait::~ConditionWait() {
  switch (phase) {
    case Phase::notify_wait:
      cond->waiters_.remove(this);
      break;
    case Phase::lock_wait:
      cond->lock_->waiters_.remove(this);
      break;
    case Phase::holding:  // the frame died between the hand-off and its resumption
      if (notified) cond->wake(1);
      cond->lock_->hand_off();
      break;
    case Phase::idle:
      break;
  }
}

// A broken barrier fails at once, and the last party trips it without waiting.
bool BarrierWait::can_complete() const noexcept {
  const Barrier& b = *barrier;
  return b.state_ == Barrier::State::broken || (b.state_ == Barrier::State::filling && b.count_ + 1 == b.parties_);
}

void BarrierWait::complete() noexcept {
  if (barrier->state_ == Barrier::State::broken) {
    outcome = Outcome::aborted;
  } else {
    barrier->arrive(this);
  }
}

void BarrierWait::enqueue() noexcept {
  Barrier& b = *barrier;
  if (b.state_ == Barrier::State::filling) {
    b.arrive(this);
  } else {
    blocked = true;
    b.blocked_.push_back(this);
  }
}

bool BarrierWait::await_ready() {
  if (!StepBudget::take() || !can_complete()) return false;
  complete();
  return true;
}

bool BarrierWait::await_suspend(std::coroutine_handle<> h) {
  Barrier& b = *barrier;
  (b.state_ == Barrier::State::filling ? b.waiting_ : b.blocked_).bind_running_loop();
  return attempt_op(*this, h);
}

std::size_t BarrierWait::await_resume() {
  end();
  if (counted) {
    counted = false;
    barrier->leave();
  }
  if (outcome == Outcome::aborted) throw BrokenBarrierError("Barrier aborted");
  if (outcome == Outcome::broken) throw BrokenBarrierError("Abort or reset of barrier");
  return index;
}

void BarrierWait::on_woken(WaitNode* n) noexcept { static_cast<BarrierWait*>(n)->wake(); }

bool BarrierWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<BarrierWait*>(w);
  Barrier& b = *self->barrier;
  if (self->blocked) {
    b.blocked_.remove(self);
    self->blocked = false;
  } else {
    b.waiting_.remove(self);
    self->counted = false;
    b.leave();
  }
  return true;
}

BarrierWait::~BarrierWait() {
  if (linked) (blocked ? barrier->blocked_ : barrier->waiting_).remove(this);
  if (counted) barrier->leave();
}

}  // namespace detail

Barrier::Barrier(std::size_t parties) : parties_(parties) {
  if (parties == 0) throw std::invalid_argument("parties must be > 0");
}

void Barrier::arrive(detail::BarrierWait* w) noexcept {
  w->index = count_++;
  w->counted = true;
  if (count_ < parties_) {
    waiting_.push_back(w);
    return;
  }
  state_ = State::draining;
  release_waiting(detail::BarrierWait::Outcome::passed);
  w->outcome = detail::BarrierWait::Outcome::passed;
}

void Barrier::release_waiting(detail::BarrierWait::Outcome outcome) noexcept {
  while (!waiting_.empty()) {
    auto* w = static_cast<detail::BarrierWait*>(waiting_.pop_front());
    w->outcome = outcome;
    w->wake();
  }
}

// A counted party left (resumed, or was cancelled while waiting). The last one to leave ends the
// drain or the reset and lets the arrivals that were held back in.
void Barrier::leave() noexcept {
  if (--count_ != 0) return;
  if (state_ == State::draining || state_ == State::resetting) state_ = State::filling;
  admit_blocked();
}

void Barrier::admit_blocked() noexcept {
  while (!blocked_.empty() && (state_ == State::filling || state_ == State::broken)) {
    auto* w = static_cast<detail::BarrierWait*>(blocked_.pop_front());
    w->blocked = false;
    if (state_ == State::broken) {
      w->outcome = detail::BarrierWait::Outcome::aborted;
      w->wake();
      continue;
    }
    arrive(w);
    if (w->outcome == detail::BarrierWait::Outcome::passed) w->wake();  // it tripped the barrier
  }
}

void Barrier::reset() {
  waiting_.check_thread("Barrier.reset");
  blocked_.check_thread("Barrier.reset");
  state_ = count_ > 0 ? State::resetting : State::filling;
  release_waiting(detail::BarrierWait::Outcome::broken);
  admit_blocked();
}

void Barrier::abort() {
  waiting_.check_thread("Barrier.abort");
  blocked_.check_thread("Barrier.abort");
  state_ = State::broken;
  release_waiting(detail::BarrierWait::Outcome::broken);
  admit_blocked();
}

}  // namespace awith
