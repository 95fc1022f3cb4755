// awith::EventLoop: the ready queue, timers, fd readiness (epoll), cross-thread wake-ups and the
// default executor. One loop per thread; everything but call_soon_threadsafe is loop-thread-only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "awith/errors.hpp"
#include "awith/task.hpp"

namespace awith {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

class EventLoop;

namespace detail {

// Something the loop runs from its ready queue: a task step or a callback.
struct Runnable {
  virtual void run() = 0;

 protected:
  ~Runnable() = default;
};

// An entry of the timer heap. Owners embed it (sleep, timeouts) so arming a timer never allocates.
struct TimerNode {
  static constexpr std::size_t kNotArmed = static_cast<std::size_t>(-1);
  TimePoint when{};
  std::uint64_t seq = 0;  // equal deadlines fire in arming order
  std::size_t heap_index = kNotArmed;
  void (*fire)(TimerNode*) = nullptr;
  bool armed() const noexcept { return heap_index != kNotArmed; }
};

// An fd registered once, edge-triggered, for both directions. epoll sets the ready bits and calls
// on_event; a reader clears `readable` when it sees EAGAIN and only then waits for the next edge.
// peer_closed (EPOLLRDHUP: the peer shut down its sending side) lets a stream reader clear
// `readable` after a short read instead of paying for a recv() that would return EAGAIN: any later
// arrival is a new edge, and only an already-reported FIN would be missed, which this flag records.
struct IoWatch {
  int fd = -1;
  bool readable = false;
  bool writable = false;
  bool hangup = false;
  bool peer_closed = false;
  void (*on_event)(IoWatch*) = nullptr;
};

struct CallbackNode;
struct CallbackTimer : TimerNode {
  CallbackNode* owner = nullptr;
};

// A heap-allocated callback for call_soon/call_later; reference counted by its Handle.
struct CallbackNode : Runnable {
  CallbackNode() noexcept { timer.owner = this; }
  std::uint32_t refs = 1;
  bool cancelled = false;
  EventLoop* loop = nullptr;
  CallbackTimer timer;  // used only by call_later/call_at
  virtual void invoke() = 0;
  void run() final;
  void release() noexcept;

 protected:
  virtual ~CallbackNode() = default;
};

template <class F>
struct CallbackImpl final : CallbackNode {
  F fn;
  explicit CallbackImpl(F f) : fn(std::move(f)) {}
  void invoke() override { fn(); }
  static void* operator new(std::size_t n) { return FramePool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { FramePool::deallocate(p, n); }
};

class TaskBase;
class ThreadPool;

// A ring buffer of runnables; amortised O(1) push and pop, no allocation once warm.
class ReadyQueue {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  void push(Runnable* r) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) & (buf_.size() - 1)] = r;
    ++size_;
  }
  Runnable* pop() noexcept {
    Runnable* r = buf_[head_];
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
    return r;
  }

 private:
  void grow();
  std::vector<Runnable*> buf_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

}  // namespace detail

// Returned by call_soon / call_later / call_at: cancel() before it runs and it never runs.
class Handle {
 public:
  Handle() = default;
  explicit Handle(detail::CallbackNode* node) noexcept : node_(node) {}
  Handle(Handle&& o) noexcept : node_(std::exchange(o.node_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      node_ = std::exchange(o.node_, nullptr);
    }
    return *this;
  }
  Handle(const Handle& o) noexcept : node_(o.node_) {
    if (node_) ++node_->refs;
  }
  Handle& operator=(const Handle& o) noexcept {
    Handle copy(o);
    std::swap(node_, copy.node_);
    return *this;
  }
  ~Handle() { reset(); }

  void cancel() noexcept;
  bool cancelled() const noexcept { return node_ && node_->cancelled; }
  // The deadline of a timer handle (call_later/call_at).
  TimePoint when() const noexcept { return node_ ? node_->timer.when : TimePoint{}; }

 private:
  void reset() noexcept {
    if (node_) node_->release();
    node_ = nullptr;
  }
  detail::CallbackNode* node_ = nullptr;
};
using TimerHandle = Handle;

struct LoopOptions {
  // Virtual time (trio's MockClock with autojump): when nothing is ready, time jumps to the next
  // timer instead of waiting. Timing tests become instant and exact.
  bool virtual_clock = false;
  // Debug checks (also AWITH_DEBUG=1): never-awaited tasks, never-retrieved exceptions, callbacks
  // that block the loop longer than slow_callback_duration.
  bool debug = false;
  Duration slow_callback_duration = std::chrono::milliseconds(100);
  // Threads of the default executor (to_thread / run_in_executor); 0 = min(32, cores + 4).
  std::size_t max_workers = 0;
};

class EventLoop {
 public:
  explicit EventLoop(LoopOptions options = {});
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The loop running on this thread, or nullptr (asyncio.get_running_loop without the raise).
  static EventLoop* current() noexcept;
  // The running loop; throws RuntimeError when none runs on this thread.
  static EventLoop& running();

  TimePoint time() const noexcept;
  bool is_running() const noexcept { return running_; }
  bool is_closed() const noexcept { return closed_; }
  bool debug() const noexcept { return options_.debug; }
  bool virtual_clock() const noexcept { return options_.virtual_clock; }
  const LoopOptions& options() const noexcept { return options_; }

  template <class F>
  Handle call_soon(F&& f) {
    check_thread("call_soon");
    auto* node = new detail::CallbackImpl<std::decay_t<F>>(std::forward<F>(f));
    node->loop = this;
    ++node->refs;  // the queue's reference
    ready_.push(node);
    return Handle{node};
  }
  template <class F>
  Handle call_later(Duration delay, F&& f) {
    return call_at(time() + delay, std::forward<F>(f));
  }
  template <class F>
  Handle call_at(TimePoint when, F&& f) {
    check_thread("call_at");
    auto* node = new detail::CallbackImpl<std::decay_t<F>>(std::forward<F>(f));
    node->loop = this;
    ++node->refs;  // the timer's reference
    node->timer.fire = &fire_callback_timer;
    add_timer(&node->timer, when);
    return Handle{node};
  }
  // The one loop entry point that is safe from any thread: f runs on the loop thread soon.
  void call_soon_threadsafe(std::function<void()> f);

  // Runs until stop() is called.
  void run_forever();
  void stop() noexcept { stopping_ = true; }
  // Runs until pred() is true after an iteration.
  template <class Pred>
  void run_until(Pred pred) {
    Running guard(*this);
    while (!pred()) run_once();
  }

  // Loop exception handler (asyncio's call_exception_handler): reports go to stderr by default.
  using ExceptionHandler = std::function<void(const std::string& message)>;
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  void call_exception_handler(const std::string& message);

  // --- for the runtime layers above (tasks, streams, servers) -----------------------------------
  void schedule(detail::Runnable* r) { ready_.push(r); }
  void add_timer(detail::TimerNode* node, TimePoint when);
  void remove_timer(detail::TimerNode* node) noexcept;
  void add_watch(detail::IoWatch* watch);     // registers watch->fd (EPOLLET, in and out)
  void remove_watch(detail::IoWatch* watch) noexcept;
  std::uint64_t next_cancel_stamp() noexcept { return ++cancel_stamp_; }
  std::uint64_t last_cancel_stamp() const noexcept { return cancel_stamp_; }
  detail::TaskBase* current_task() const noexcept { return current_task_; }
  void set_current_task(detail::TaskBase* t) noexcept { current_task_ = t; }
  // Runs job on the default executor's threads (to_thread builds on this).
  void submit_to_executor(std::function<void()> job);
  void shutdown_executor() noexcept;
  // Every live task (for all_tasks and run()'s shutdown).
  void register_task(detail::TaskBase* t) noexcept;
  void unregister_task(detail::TaskBase* t) noexcept;
  detail::TaskBase* first_task() const noexcept { return tasks_head_; }
  // Ends every live task without running it again (a loop shutting down in deadlock): frames are
  // destroyed with this loop current, so debug reports reach its exception handler.
  void abandon_tasks() noexcept;
  std::size_t pending_io_waits = 0;  // waits on fds: the virtual clock must not call these idle
  void check_thread(const char* what) const;

 private:
  struct Running {
    explicit Running(EventLoop& loop);
    ~Running();
    EventLoop& loop;
    EventLoop* previous;
  };
  void run_once();
  void poll_io(int timeout_ns);
  void run_timers(TimePoint now);
  void drain_threadsafe();
  static void fire_callback_timer(detail::TimerNode* node);
  void heap_up(std::size_t i) noexcept;
  void heap_down(std::size_t i) noexcept;
  bool heap_less(std::size_t a, std::size_t b) const noexcept;

  LoopOptions options_;
  detail::ReadyQueue ready_;
  std::vector<detail::TimerNode*> timers_;
  std::uint64_t timer_seq_ = 0;
  std::uint64_t cancel_stamp_ = 0;
  detail::TaskBase* current_task_ = nullptr;
  detail::TaskBase* tasks_head_ = nullptr;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  detail::IoWatch wake_watch_;
  std::size_t watches_ = 0;
  unsigned iterations_since_poll_ = 0;
  TimePoint virtual_now_{};
  bool running_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  const void* owner_thread_;
  std::mutex threadsafe_mutex_;
  std::vector<std::function<void()>> threadsafe_;
  std::vector<std::function<void()>> threadsafe_swap_;
  // Written under threadsafe_mutex_; read without it by the busy loop to decide whether to poll.
  std::atomic<bool> wake_pending_{false};
  std::unique_ptr<detail::ThreadPool> executor_;
  ExceptionHandler exception_handler_;
};

}  // namespace awith
