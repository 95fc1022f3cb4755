// asyncio.Queue, PriorityQueue and LifoQueue for tasks of one event loop, with Python 3.13's
// shutdown().
//
// Like the primitives in sync.hpp: loop-local (no mutex, no atomic), waiters embedded in the
// awaitables and served FIFO, and direct hand-off. A put() that finds a getter waiting gives it
// the item (the queue is empty then, so it is the item the getter would have taken); a get()
// that frees a slot moves the first blocked putter's item in. The queue stays empty (or full) for
// everyone else, so a woken task never finds its item or slot taken by a task that ran first.
// Why: an item always has exactly one owner (the queue, a putter or a getter), so no timing of
// cancellations can lose or duplicate one.
//
// get() and put() are checkpoints, also when they complete at once (a non-empty queue, a free
// slot): a task that can see a cancellation gets CancelledError before it takes or adds anything,
// and after LoopOptions::task_budget immediate completions in one task step the next one yields
// to the loop first (docs/design.md). A waiter cancelled while queued leaves the queue having
// taken or given nothing. One cancelled after the hand-off has completed its operation: its get()
// returns the item, its put() has added it, and CancelledError comes at its next checkpoint.
// Where this differs from asyncio: asyncio leaves a put item in the queue and wakes a getter; a
// getter cancelled before it runs raises CancelledError and wakes the next getter, which takes the
// item (and a putter cancelled after a get() woke it raises without having put). A handed-off
// item is also not counted by qsize() in the moment between the put() and the getter's
// resumption (asyncio counts it until the getter runs).
//
// Errors: QueueFull (put_nowait on a full queue), QueueEmpty (get_nowait on an empty one),
// QueueShutDown (put after shutdown(); get after shutdown() once the queue is empty, or at once
// after shutdown(true)), std::invalid_argument for task_done() called more often than put().
#pragma once

#include <algorithm>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "awith/runtime.hpp"
#include "awith/sync.hpp"

namespace awith {

class QueueEmpty : public std::runtime_error {
 public:
  QueueEmpty() : std::runtime_error("queue is empty") {}
};
class QueueFull : public std::runtime_error {
 public:
  QueueFull() : std::runtime_error("queue is full") {}
};
class QueueShutDown : public std::runtime_error {
 public:
  QueueShutDown() : std::runtime_error("queue is shut down") {}
};

namespace detail {

template <class T>
class FifoItems {
 public:
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& v) { items_.push_back(std::move(v)); }
  T pop() {
    T v = std::move(items_.front());
    items_.pop_front();
    return v;
  }

 private:
  std::deque<T> items_;
};

template <class T>
class LifoItems {
 public:
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& v) { items_.push_back(std::move(v)); }
  T pop() {
    T v = std::move(items_.back());
    items_.pop_back();
    return v;
  }

 private:
  std::vector<T> items_;
};

// A binary heap that pops the smallest item under Compare first (Python's heapq).
template <class T, class Compare>
class HeapItems {
 public:
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& v) {
    items_.push_back(std::move(v));
    std::push_heap(items_.begin(), items_.end(), greater());
  }
  T pop() {
    std::pop_heap(items_.begin(), items_.end(), greater());
    T v = std::move(items_.back());
    items_.pop_back();
    return v;
  }

 private:
  auto greater() const {
    return [this](const T& a, const T& b) { return less_(b, a); };
  }
  std::vector<T> items_;
  [[no_unique_address]] Compare less_{};
};

template <class T, class Items>
class BasicQueue {
 public:
  // maxsize 0: unbounded.
  explicit BasicQueue(std::size_t maxsize = 0) : maxsize_(maxsize) { finished_.set(); }
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  std::size_t maxsize() const noexcept { return maxsize_; }
  std::size_t qsize() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.size() == 0; }
  bool full() const noexcept { return maxsize_ != 0 && items_.size() >= maxsize_; }

  struct GetWait : WaitSlot, WaitNode {
    BasicQueue* queue;
    std::optional<T> item;
    bool shut_down = false;
    explicit GetWait(BasicQueue& q) noexcept : queue(&q) {
      Waiter::detach = &on_detach;
      WaitNode::woken = &on_woken;
    }
    GetWait(const GetWait&) = delete;
    GetWait& operator=(const GetWait&) = delete;
    ~GetWait() {
      if (linked) queue->getters_.remove(this);
    }
    std::exception_ptr error;  // taking the item failed after a yield
    bool await_ready() {
      if (!StepBudget::take() || !can_complete()) return false;
      complete();
      return true;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      queue->getters_.bind_running_loop();
      return attempt_op(*this, h);
    }
    bool can_complete() const noexcept { return !queue->empty() || queue->shut_down_; }
    void complete() {
      if (queue->empty()) {
        shut_down = true;
      } else {
        item.emplace(queue->take());
      }
    }
    void enqueue() noexcept { queue->getters_.push_back(this); }
    T await_resume() {
      end();
      if (error) std::rethrow_exception(error);
      if (shut_down) throw QueueShutDown();
      return std::move(*item);
    }
    static void on_woken(WaitNode* n) noexcept { static_cast<GetWait*>(n)->wake(); }
    static bool on_detach(Waiter* w) noexcept {
      auto* self = static_cast<GetWait*>(w);
      self->queue->getters_.remove(self);
      return true;
    }
  };

  struct PutWait : WaitSlot, WaitNode {
    BasicQueue* queue;
    T item;
    bool shut_down = false;
    PutWait(BasicQueue& q, T&& v) : queue(&q), item(std::move(v)) {
      Waiter::detach = &on_detach;
      WaitNode::woken = &on_woken;
    }
    PutWait(const PutWait&) = delete;
    PutWait& operator=(const PutWait&) = delete;
    ~PutWait() {
      if (linked) queue->putters_.remove(this);
    }
    std::exception_ptr error;  // adding the item failed after a yield
    bool await_ready() {
      if (!StepBudget::take() || !can_complete()) return false;
      complete();
      return true;
    }
    bool await_suspend(std::coroutine_handle<> h) {
      queue->putters_.bind_running_loop();
      return attempt_op(*this, h);
    }
    bool can_complete() const noexcept { return queue->shut_down_ || !queue->full(); }
    void complete() {
      if (queue->shut_down_) {
        shut_down = true;
      } else {
        queue->add(std::move(item));
      }
    }
    void enqueue() noexcept { queue->putters_.push_back(this); }
    void await_resume() {
      end();
      if (error) std::rethrow_exception(error);
      if (shut_down) throw QueueShutDown();
    }
    static void on_woken(WaitNode* n) noexcept { static_cast<PutWait*>(n)->wake(); }
    static bool on_detach(Waiter* w) noexcept {
      auto* self = static_cast<PutWait*>(w);
      self->queue->putters_.remove(self);
      return true;
    }
  };

  struct JoinWait : EventWait {
    using EventWait::EventWait;
    void await_resume() { EventWait::await_resume(); }
  };

  // Awaitable: the next item, waiting while the queue is empty.
  GetWait get() noexcept { return GetWait(*this); }
  // Awaitable: adds item, waiting while the queue is full.
  PutWait put(T item) { return PutWait(*this, std::move(item)); }
  T get_nowait() {
    if (empty()) {
      if (shut_down_) throw QueueShutDown();
      throw QueueEmpty();
    }
    return take();
  }
  void put_nowait(T item) {
    if (shut_down_) throw QueueShutDown();
    if (full()) throw QueueFull();
    add(std::move(item));
  }
  // Marks one item taken with get() as processed; join() returns when every put item is.
  void task_done() {
    if (unfinished_ == 0) throw std::invalid_argument("task_done() called too many times");
    if (--unfinished_ == 0) finished_.set();
  }
  JoinWait join() noexcept { return JoinWait(finished_); }

  // Python 3.13: put() raises QueueShutDown from now on, and so does get() once the queue is
  // empty; waiting putters and getters wake with it. immediate: the items still queued are
  // dropped (and count as done for join()).
  void shutdown(bool immediate = false) {
    getters_.check_thread("Queue.shutdown");
    putters_.check_thread("Queue.shutdown");
    shut_down_ = true;
    if (immediate) {
      while (!empty()) {
        items_.pop();
        if (unfinished_ > 0) --unfinished_;
      }
      if (unfinished_ == 0) finished_.set();
    }
    for (WaitList* list : {&getters_, &putters_}) {
      while (!list->empty()) {
        WaitNode* n = list->pop_front();
        if (list == &getters_) {
          static_cast<GetWait*>(n)->shut_down = true;
        } else {
          static_cast<PutWait*>(n)->shut_down = true;
        }
        n->woken(n);
      }
    }
  }

 private:
  void add(T&& v) {
    getters_.check_thread("Queue.put");
    ++unfinished_;
    finished_.clear();
    if (!getters_.empty()) {  // only while empty: the first getter takes the item directly
      auto* g = static_cast<GetWait*>(getters_.pop_front());
      g->item.emplace(std::move(v));
      g->wake();
      return;
    }
    items_.push(std::move(v));
  }
  T take() {
    putters_.check_thread("Queue.get");
    T v = items_.pop();
    if (!putters_.empty()) {  // only while full: the slot just freed goes to the first putter
      auto* p = static_cast<PutWait*>(putters_.pop_front());
      ++unfinished_;
      finished_.clear();
      items_.push(std::move(p->item));
      p->wake();
    }
    return v;
  }

  Items items_;
  WaitList getters_;
  WaitList putters_;
  Event finished_;
  std::size_t maxsize_;
  std::size_t unfinished_ = 0;
  bool shut_down_ = false;
};

}  // namespace detail

// FIFO queue (asyncio.Queue).
template <class T>
class Queue : public detail::BasicQueue<T, detail::FifoItems<T>> {
 public:
  using detail::BasicQueue<T, detail::FifoItems<T>>::BasicQueue;
};

// Smallest item first under Compare (asyncio.PriorityQueue; use a pair/tuple for (priority, data)).
template <class T, class Compare = std::less<T>>
class PriorityQueue : public detail::BasicQueue<T, detail::HeapItems<T, Compare>> {
 public:
  using detail::BasicQueue<T, detail::HeapItems<T, Compare>>::BasicQueue;
};

// Last in, first out (asyncio.LifoQueue).
template <class T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoItems<T>> {
 public:
  using detail::BasicQueue<T, detail::LifoItems<T>>::BasicQueue;
};

}  // namespace awith
