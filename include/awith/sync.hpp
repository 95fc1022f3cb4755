// Synchronization primitives (asyncio.Lock, Event, Condition, Semaphore, BoundedSemaphore,
// Barrier) for tasks of one event loop.
//
// Design:
// - Loop-local: no mutex, no atomic. Every operation must run on the loop thread of the tasks
//   that use the primitive.
// - No allocation per wait: each awaitable embeds its wait node; a primitive keeps its waiters
//   in an intrusive FIFO list, so waiters are served in arrival order.
// - Direct hand-off: release() with a task waiting makes the first waiter the owner of the lock
//   (or gives it the permit), then wakes it. Neither is ever free in between: locked() stays true
//   (a Semaphore's value() does not grow), so a task that arrives before the woken waiter runs
//   waits in line instead of barging ahead of it. Why: the lock and each permit always
//   have exactly one owner (the primitive or one waiter), so no timing of cancellations can lose
//   or duplicate one, and waiters are served strictly first come, first served.
// - Checkpoints: every acquire() and wait() is one, also when it completes at once (a free lock
//   or permit, a set event), so a busy task stays cancellable: a task that can see a cancellation
//   gets CancelledError there before it takes anything (inside a cleanup scope, the cancellation
//   its task was already unwinding from does not count). Each task step may complete LoopOptions::task_budget such
//   operations at once; the next one yields to the loop first and takes nothing until the task
//   runs again. The suspension contract is in runtime.hpp, the model in docs/design.md.
// - Cancellation of a waiter: cancelled while queued, it leaves the queue holding nothing and the
//   next release goes to the waiter behind it. Cancelled after it was handed the lock or permit but
//   before it resumed, it keeps it (the hand-off reached it first): its acquire() completes and
//   CancelledError comes at its next checkpoint; inside async_with the body starts, and the exit
//   releases. asyncio instead raises CancelledError in such a waiter and passes the lock or permit
//   to the next one, so a few of CPython's tests observe a difference (docs/design.md lists them).
//   Condition::wait() is the exception, as in asyncio 3.13: it re-acquires the lock
//   uninterruptibly, then raises CancelledError if the task was cancelled, and a waiter that had
//   been notified passes its notification on to the next waiter (notify(1)).
// - Errors: misuse raises awith::RuntimeError (asyncio's RuntimeError): releasing an unlocked
//   Lock, Condition wait()/notify() without the lock held. Value errors raise
//   std::invalid_argument (asyncio's ValueError): Semaphore(-1), a BoundedSemaphore released
//   more times than acquired, Barrier(0). A broken Barrier raises BrokenBarrierError.
//
// Signalling from another thread: these primitives are not thread-safe. Hand the operation to
// the loop thread instead:
//     loop.call_soon_threadsafe([&event] { event.set(); });
// (`loop` is the EventLoop the waiting tasks run on, e.g. captured with EventLoop::running()).
// Misuse is caught where it would do harm: waking waiters (release, set, notify, put/get
// hand-offs, shutdown, Barrier reset/abort) from a thread that does not run their loop, and
// awaiting a primitive from a task of another loop while tasks of the first still wait on it,
// raise RuntimeError (asyncio's "bound to a different event loop"). An idle primitive may move
// from one loop to the next, for example across successive awith::run() calls.
//
// Async context managers: Lock, Semaphore, BoundedSemaphore and Condition offer aenter() (an
// acquire that yields the primitive itself) and aexit(std::exception_ptr) (release, never
// suppresses), so `co_await async_with(lock, [&](Lock&) -> Task<void> {...})` holds the lock for
// the body and releases it however the body ends.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "awith/errors.hpp"
#include "awith/runtime.hpp"
#include "awith/task.hpp"

namespace awith {

// A Barrier was aborted, or reset while the task waited at it (asyncio.BrokenBarrierError).
class BrokenBarrierError : public RuntimeError {
 public:
  using RuntimeError::RuntimeError;
};

namespace detail {

// An entry of a primitive's FIFO waiter list. `woken` is what the primitive calls when it picks
// this entry (the entry is already unlinked then).
struct WaitNode {
  WaitNode* prev = nullptr;
  WaitNode* next = nullptr;
  void (*woken)(WaitNode*) = nullptr;
  bool linked = false;
};

class WaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  // The waiters in a list all run on one loop. A task of another loop cannot join them, and they
  // cannot be woken from a thread that does not run their loop (use call_soon_threadsafe): both
  // are RuntimeErrors. Called before the awaitable registers its wait.
  void bind_running_loop() {
    EventLoop* running = EventLoop::current();
    if (!running) return;  // WaitSlot::begin reports the missing task
    if (head_ && loop_ != running)
      throw RuntimeError("an awith primitive or queue was awaited from another event loop than its waiters'");
    loop_ = running;
  }
  // Joins a waiter moved over from another list of the same loop (Condition to its Lock).
  void adopt_loop(EventLoop& loop) noexcept {
    if (!head_) loop_ = &loop;
  }
  void check_thread(const char* what) const {
    if (head_) loop_->check_thread(what);
  }
  void push_back(WaitNode* n) noexcept {
    n->prev = tail_;
    n->next = nullptr;
    if (tail_) {
      tail_->next = n;
    } else {
      head_ = n;
    }
    tail_ = n;
    n->linked = true;
  }
  WaitNode* pop_front() noexcept {
    WaitNode* n = head_;
    remove(n);
    return n;
  }
  void remove(WaitNode* n) noexcept {
    if (n->prev) {
      n->prev->next = n->next;
    } else {
      head_ = n->next;
    }
    if (n->next) {
      n->next->prev = n->prev;
    } else {
      tail_ = n->prev;
    }
    n->prev = n->next = nullptr;
    n->linked = false;
  }
  // Wakes the first waiter; false when there is none.
  bool wake_first() noexcept {
    if (!head_) return false;
    WaitNode* n = pop_front();
    n->woken(n);
    return true;
  }
  void wake_all() noexcept {
    while (wake_first()) {
    }
  }

 private:
  WaitNode* head_ = nullptr;
  WaitNode* tail_ = nullptr;
  EventLoop* loop_ = nullptr;
};

// A wait for a permit that the releaser hands over directly (Lock, Semaphore). `granted` is true
// between the hand-off and await_resume; if the frame dies in between, the permit goes back.
struct PermitWait : WaitSlot, WaitNode {
  WaitList* queue;
  bool granted = false;
  explicit PermitWait(WaitList& q) noexcept : queue(&q) {
    Waiter::detach = &on_detach;
    WaitNode::woken = &on_granted;
  }
  PermitWait(const PermitWait&) = delete;
  PermitWait& operator=(const PermitWait&) = delete;
  ~PermitWait() {
    if (linked) queue->remove(this);
  }
  void take() {
    end();
    granted = false;
  }
  static void on_granted(WaitNode* n) noexcept {
    auto* self = static_cast<PermitWait*>(n);
    self->granted = true;
    self->wake();
  }
  static bool on_detach(Waiter* w) noexcept {
    auto* self = static_cast<PermitWait*>(w);
    self->queue->remove(self);
    return true;
  }
};

}  // namespace detail

class Lock;
class Semaphore;
class Condition;

namespace detail {

struct ConditionWait;

struct LockAcquire : PermitWait {
  Lock* lock;
  explicit LockAcquire(Lock& l) noexcept;
  ~LockAcquire();
  bool await_ready() noexcept;
  bool await_suspend(std::coroutine_handle<> h) {
    queue->bind_running_loop();
    return attempt_op(*this, h);
  }
  bool can_complete() const noexcept;
  void complete() noexcept;
  void enqueue() noexcept { queue->push_back(this); }
  bool await_resume() {
    take();
    return true;
  }
};

// The acquire of `async_with(primitive, ...)`: the body receives the primitive itself.
template <class Acquire, class Manager>
struct EnterAwaiter : Acquire {
  Manager* manager;
  explicit EnterAwaiter(Manager& m) noexcept : Acquire(m), manager(&m) {}
  Manager& await_resume() {
    Acquire::await_resume();
    return *manager;
  }
};

struct SemaphoreAcquire : PermitWait {
  Semaphore* sem;
  explicit SemaphoreAcquire(Semaphore& s) noexcept;
  ~SemaphoreAcquire();
  bool await_ready() noexcept;
  bool await_suspend(std::coroutine_handle<> h) {
    queue->bind_running_loop();
    return attempt_op(*this, h);
  }
  bool can_complete() const noexcept;
  void complete() noexcept;
  void enqueue() noexcept { queue->push_back(this); }
  bool await_resume() {
    take();
    return true;
  }
};

}  // namespace detail

// asyncio.Lock: not reentrant, not owner-checked; waiters acquire in FIFO order. release() hands
// the lock to the first waiter, so locked() stays true across the hand-off.
class Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  bool locked() const noexcept { return locked_; }
  // Awaitable; completes (returning true) once this task holds the lock.
  detail::LockAcquire acquire() noexcept { return detail::LockAcquire(*this); }
  // Hands the lock to the first waiter, or unlocks it. RuntimeError if it is not locked.
  void release() {
    if (!locked_) throw RuntimeError("Lock is not acquired.");
    waiters_.check_thread("Lock.release");
    hand_off();
  }

  detail::EnterAwaiter<detail::LockAcquire, Lock> aenter() noexcept {
    return detail::EnterAwaiter<detail::LockAcquire, Lock>(*this);
  }
  std::suspend_never aexit(std::exception_ptr) {
    release();
    return {};
  }

 private:
  friend struct detail::LockAcquire;
  friend class Condition;
  friend struct detail::ConditionWait;
  void hand_off() noexcept {
    if (!waiters_.wake_first()) locked_ = false;
  }
  detail::WaitList waiters_;  // non-empty only while locked
  bool locked_ = false;
};

// asyncio.Semaphore: value() permits are free; acquire() takes one or waits FIFO for one.
// release() hands its permit to the first waiter if there is one (value() does not grow then).
class Semaphore {
 public:
  explicit Semaphore(std::int64_t value = 1) : Semaphore(value, INT64_MAX) {}
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // True when acquire() would wait.
  bool locked() const noexcept { return value_ == 0; }
  // The number of free permits (asyncio's _value).
  std::int64_t value() const noexcept { return value_; }
  detail::SemaphoreAcquire acquire() noexcept { return detail::SemaphoreAcquire(*this); }
  // Hands a permit to the first waiter, or adds one. A BoundedSemaphore throws
  // std::invalid_argument when that would exceed its initial value.
  void release() {
    if (value_ >= bound_) throw std::invalid_argument("BoundedSemaphore released too many times");
    waiters_.check_thread("Semaphore.release");
    if (!waiters_.wake_first()) ++value_;
  }

  detail::EnterAwaiter<detail::SemaphoreAcquire, Semaphore> aenter() noexcept {
    return detail::EnterAwaiter<detail::SemaphoreAcquire, Semaphore>(*this);
  }
  std::suspend_never aexit(std::exception_ptr) {
    release();
    return {};
  }

 protected:
  Semaphore(std::int64_t value, std::int64_t bound) : value_(value), bound_(bound) {
    if (value < 0) throw std::invalid_argument("Semaphore initial value must be >= 0");
  }

 private:
  friend struct detail::SemaphoreAcquire;
  detail::WaitList waiters_;  // non-empty only while value_ == 0
  std::int64_t value_;
  std::int64_t bound_;
};

// asyncio.BoundedSemaphore: release() beyond the initial value raises std::invalid_argument.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::int64_t value = 1) : Semaphore(value, value) {}

  detail::EnterAwaiter<detail::SemaphoreAcquire, BoundedSemaphore> aenter() noexcept {
    return detail::EnterAwaiter<detail::SemaphoreAcquire, BoundedSemaphore>(*this);
  }
};

inline detail::LockAcquire::LockAcquire(Lock& l) noexcept : PermitWait(l.waiters_), lock(&l) {}
inline detail::LockAcquire::~LockAcquire() {
  if (granted) lock->hand_off();
}
inline bool detail::LockAcquire::can_complete() const noexcept { return !lock->locked_; }
inline void detail::LockAcquire::complete() noexcept { lock->locked_ = true; }
inline bool detail::LockAcquire::await_ready() noexcept {
  if (!StepBudget::take() || lock->locked_) return false;
  lock->locked_ = true;
  return true;
}

inline detail::SemaphoreAcquire::SemaphoreAcquire(Semaphore& s) noexcept : PermitWait(s.waiters_), sem(&s) {}
inline detail::SemaphoreAcquire::~SemaphoreAcquire() {
  if (granted && !sem->waiters_.wake_first()) ++sem->value_;
}
inline bool detail::SemaphoreAcquire::can_complete() const noexcept { return sem->value_ > 0; }
inline void detail::SemaphoreAcquire::complete() noexcept { --sem->value_; }
inline bool detail::SemaphoreAcquire::await_ready() noexcept {
  if (!StepBudget::take() || sem->value_ == 0) return false;
  --sem->value_;
  return true;
}

class Event;

namespace detail {
struct EventWait : WaitSlot, WaitNode {
  Event* event;
  explicit EventWait(Event& e) noexcept;
  EventWait(const EventWait&) = delete;
  EventWait& operator=(const EventWait&) = delete;
  ~EventWait();
  bool await_ready() const noexcept;
  bool await_suspend(std::coroutine_handle<> h);
  bool can_complete() const noexcept;
  void complete() noexcept {}
  void enqueue() noexcept;
  bool await_resume() {
    end();
    return true;
  }
  static void on_set(WaitNode* n) noexcept { static_cast<EventWait*>(n)->wake(); }
  static bool on_detach(Waiter* w) noexcept;
};
}  // namespace detail

// asyncio.Event: set() wakes every task waiting at that moment, even if clear() follows before
// they run; wait() on a set event completes at once (returning true).
class Event {
 public:
  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  bool is_set() const noexcept { return value_; }
  void set() {
    if (value_) return;
    waiters_.check_thread("Event.set");
    value_ = true;
    waiters_.wake_all();
  }
  void clear() noexcept { value_ = false; }
  detail::EventWait wait() noexcept { return detail::EventWait(*this); }

 private:
  friend struct detail::EventWait;
  detail::WaitList waiters_;
  bool value_ = false;
};

inline detail::EventWait::EventWait(Event& e) noexcept : event(&e) {
  Waiter::detach = &on_detach;
  WaitNode::woken = &on_set;
}
inline detail::EventWait::~EventWait() {
  if (linked) event->waiters_.remove(this);
}
inline bool detail::EventWait::await_ready() const noexcept { return StepBudget::take() && event->value_; }
inline bool detail::EventWait::can_complete() const noexcept { return event->value_; }
inline void detail::EventWait::enqueue() noexcept { event->waiters_.push_back(this); }
inline bool detail::EventWait::await_suspend(std::coroutine_handle<> h) {
  event->waiters_.bind_running_loop();
  return attempt_op(*this, h);
}
inline bool detail::EventWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<EventWait*>(w);
  self->event->waiters_.remove(self);
  return true;
}

namespace detail {
// Condition::wait(): releases the lock and queues on the condition; notify() moves the entry
// straight into the lock's FIFO queue, and the task resumes once it holds the lock again.
struct ConditionWait : WaitSlot, WaitNode {
  enum class Phase : std::uint8_t { idle, notify_wait, lock_wait, holding };
  Condition* cond;
  Phase phase = Phase::idle;
  bool notified = false;
  explicit ConditionWait(Condition& c) noexcept : cond(&c) {
    Waiter::detach = &on_detach;
    WaitNode::woken = &on_woken;
  }
  ConditionWait(const ConditionWait&) = delete;
  ConditionWait& operator=(const ConditionWait&) = delete;
  ~ConditionWait();
  bool await_ready() const;
  bool await_suspend(std::coroutine_handle<> h);
  bool await_resume();
  static void on_woken(WaitNode* n) noexcept;
  static bool on_detach(Waiter* w) noexcept;
};
}  // namespace detail

// asyncio.Condition over its own Lock or a given one. wait()/notify() need the lock held
// (RuntimeError otherwise). wait() re-acquires the lock before it returns or raises.
class Condition {
 public:
  Condition() noexcept : lock_(&own_lock_) {}
  explicit Condition(Lock& lock) noexcept : lock_(&lock) {}
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  bool locked() const noexcept { return lock_->locked(); }
  detail::LockAcquire acquire() noexcept { return lock_->acquire(); }
  void release() { lock_->release(); }

  // Awaitable: releases the lock, waits for notify(), re-acquires the lock; returns true.
  detail::ConditionWait wait() noexcept { return detail::ConditionWait(*this); }
  // Waits until pred() is truthy (checked first, and again after every wake-up) and returns
  // pred()'s last value.
  template <class Pred>
  Task<std::decay_t<std::invoke_result_t<Pred&>>> wait_for(Pred pred) {
    auto result = pred();
    while (!result) {
      co_await wait();
      result = pred();
    }
    co_return result;
  }
  // Wakes up to n waiters, first come first served.
  void notify(std::size_t n = 1) {
    if (!locked()) throw RuntimeError("cannot notify on un-acquired lock");
    waiters_.check_thread("Condition.notify");
    wake(n);
  }
  void notify_all() { notify(SIZE_MAX); }

  detail::EnterAwaiter<detail::LockAcquire, Condition> aenter() noexcept;
  std::suspend_never aexit(std::exception_ptr) {
    release();
    return {};
  }

 private:
  friend struct detail::ConditionWait;
  void wake(std::size_t n) noexcept {
    for (std::size_t i = 0; i < n && waiters_.wake_first(); ++i) {
    }
  }
  Lock own_lock_;
  Lock* lock_;
  detail::WaitList waiters_;
};

namespace detail {
// The acquire of async_with(condition, ...) is the acquire of its lock.
template <>
struct EnterAwaiter<LockAcquire, Condition> : LockAcquire {
  Condition* manager;
  explicit EnterAwaiter(Condition& c, Lock& l) noexcept : LockAcquire(l), manager(&c) {}
  Condition& await_resume() {
    LockAcquire::await_resume();
    return *manager;
  }
};
}  // namespace detail

inline detail::EnterAwaiter<detail::LockAcquire, Condition> Condition::aenter() noexcept {
  return detail::EnterAwaiter<detail::LockAcquire, Condition>(*this, *lock_);
}

class Barrier;

namespace detail {
struct BarrierWait : WaitSlot, WaitNode {
  enum class Outcome : std::uint8_t { pending, passed, aborted, broken };
  Barrier* barrier;
  std::size_t index = 0;
  Outcome outcome = Outcome::pending;
  bool counted = false;  // this arrival is in the barrier's count until it resumes
  bool blocked = false;  // queued until the barrier has drained or reset
  explicit BarrierWait(Barrier& b) noexcept : barrier(&b) {
    Waiter::detach = &on_detach;
    WaitNode::woken = &on_woken;
  }
  BarrierWait(const BarrierWait&) = delete;
  BarrierWait& operator=(const BarrierWait&) = delete;
  ~BarrierWait();
  bool await_ready();
  bool await_suspend(std::coroutine_handle<> h);
  bool can_complete() const noexcept;
  void complete() noexcept;
  void enqueue() noexcept;
  std::size_t await_resume();
  static void on_woken(WaitNode* n) noexcept;
  static bool on_detach(Waiter* w) noexcept;
};
}  // namespace detail

// asyncio.Barrier: wait() returns once `parties` tasks are waiting, each with its arrival index
// (0 .. parties-1). While the released parties leave, new arrivals wait for the next round.
// abort() breaks it: waiting and later calls raise BrokenBarrierError; reset() breaks the current
// round only and makes it usable again. reset() and abort() are synchronous here (asyncio's are
// coroutines only because they take the internal lock, which a loop-local barrier does not need).
class Barrier {
 public:
  explicit Barrier(std::size_t parties);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  detail::BarrierWait wait() noexcept { return detail::BarrierWait(*this); }
  void reset();
  void abort();
  std::size_t parties() const noexcept { return parties_; }
  // Tasks waiting for the current round to fill.
  std::size_t n_waiting() const noexcept { return state_ == State::filling ? count_ : 0; }
  bool broken() const noexcept { return state_ == State::broken; }

  detail::BarrierWait aenter() noexcept { return wait(); }
  std::suspend_never aexit(std::exception_ptr) noexcept { return {}; }

 private:
  friend struct detail::BarrierWait;
  enum class State : std::uint8_t { filling, draining, resetting, broken };
  // Counts an arrival in the filling round: trips the barrier or queues it to wait.
  void arrive(detail::BarrierWait* w) noexcept;
  void leave() noexcept;
  void admit_blocked() noexcept;
  void release_waiting(detail::BarrierWait::Outcome outcome) noexcept;
  detail::WaitList waiting_;  // counted arrivals of the filling round
  detail::WaitList blocked_;  // arrivals held back while the barrier drains or resets
  std::size_t parties_;
  std::size_t count_ = 0;
  State state_ = State::filling;
};

}  // namespace awith
