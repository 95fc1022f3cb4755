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
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "awith/errors.hpp"
#include "awith/exception_context.hpp"
#include "awith/source_location.hpp"
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
  // A background watch (the signal pipe) does not count as pending I/O: the virtual clock still
  // jumps and still reports a deadlock while it is registered.
  bool background = false;
  void (*on_event)(IoWatch*) = nullptr;
};

// Set by awith's C signal handlers after they wrote to the signal pipe, cleared when the pipe is
// read: a busy loop, which otherwise skips epoll while no fd is pending, then polls.
extern std::atomic<bool> signal_arrived;

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
  SourceLocation where;  // where the callback was created, for the exception handler's report
  virtual void invoke() = 0;
  // Runs the callback unless cancelled. What it throws goes to the loop's exception handler, as
  // asyncio's Handle._run does: one failing callback must not stop the loop or leak the node.
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

template <class F>
inline constexpr bool is_std_function_v = false;
template <class R, class... A>
inline constexpr bool is_std_function_v<std::function<R(A...)>> = true;

// A null function pointer or an empty std::function would fail only when the loop runs it; reject
// it where it is scheduled instead.
template <class F>
void require_callable(const F& f, const char* what) {
  if constexpr (std::is_pointer_v<F> || is_std_function_v<F>) {
    if (!f) throw std::invalid_argument(std::string(what) + "(): the callback is empty");
  }
}

// now + delay, saturating at the ends of the clock's range instead of overflowing.
constexpr TimePoint deadline_after(TimePoint now, Duration delay) noexcept {
  Duration base = now.time_since_epoch();
  if (delay > Duration::zero() && base > Duration::max() - delay) return TimePoint::max();
  if (delay < Duration::zero() && base < Duration::min() - delay) return TimePoint::min();
  return now + delay;
}

// The epoll_wait timeout until `deadline`: whole milliseconds rounded up, so a timer never fires
// early, and clamped to int (a deadline more than 24.8 days away would otherwise wrap around).
int poll_timeout_ms(TimePoint deadline, TimePoint now) noexcept;

class TaskBase;
class ThreadPool;
struct AwaitObserver;

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
  // Moves the last n entries to the front, in their order (what a mid-iteration poll woke).
  void move_back_to_front(std::size_t n) noexcept {
    const std::size_t mask = buf_.size() - 1;
    for (std::size_t i = 0; i < n; ++i) {
      Runnable* r = buf_[(head_ + size_ - 1) & mask];
      head_ = (head_ - 1) & mask;
      buf_[head_] = r;
    }
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
  // Debug checks (also AWITH_DEBUG=1), reported to this loop's exception handler only: coroutines
  // never awaited, context managers entered and never exited, callbacks and task steps that block
  // the loop longer than slow_callback_duration. (Task exceptions never retrieved are reported in
  // every mode.)
  bool debug = false;
  Duration slow_callback_duration = std::chrono::milliseconds(100);
  // Operations a task step may complete without suspending before the next one yields to the
  // loop first (an uncontended lock, a non-empty queue, buffered stream data): timers, I/O and
  // other tasks then run, and a deadline fires on time. 0 lifts the limit (not recommended).
  int task_budget = 128;
  // Threads of the default executor (to_thread / run_in_executor); 0 = min(32, cores + 4).
  std::size_t max_workers = 0;
  // How long shutting the default executor down (at the end of run(), and when the loop is
  // destroyed) waits for jobs still running, such as a getaddrinfo that never returns; nullopt
  // waits without a bound. asyncio's bound (300 s): a job may be real work the program relies on,
  // which the process exit would cut short. After it the loop reports through the exception
  // handler, drops the queued jobs and leaves the running ones on detached threads that never
  // touch the loop again (their results are dropped). Negative: std::invalid_argument.
  std::optional<Duration> executor_shutdown_timeout = std::chrono::seconds(300);
  // Ctrl-C in awith::run as in asyncio.run: the first SIGINT cancels the main task, run() finishes
  // the shutdown and throws KeyboardInterrupt; a second SIGINT ends the process (run.hpp).
  bool handle_sigint = true;
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

  // Callbacks run on the loop thread; what they throw goes to the exception handler, with
  // `where` (the caller's line by default) as the callback's creation site.
  template <class F>
  Handle call_soon(F&& f, SourceLocation where = SourceLocation::current()) {
    check_thread("call_soon");
    detail::require_callable(f, "call_soon");
    auto* node = new detail::CallbackImpl<std::decay_t<F>>(std::forward<F>(f));
    node->loop = this;
    node->where = where;
    ++node->refs;  // the queue's reference
    ready_.push(node);
    return Handle{node};
  }
  // A delay too long to represent saturates to a deadline that never comes.
  template <class F>
  Handle call_later(Duration delay, F&& f, SourceLocation where = SourceLocation::current()) {
    return call_at(detail::deadline_after(time(), delay), std::forward<F>(f), where);
  }
  template <class F>
  Handle call_at(TimePoint when, F&& f, SourceLocation where = SourceLocation::current()) {
    check_thread("call_at");
    detail::require_callable(f, "call_at");
    auto* node = new detail::CallbackImpl<std::decay_t<F>>(std::forward<F>(f));
    node->loop = this;
    node->where = where;
    ++node->refs;  // the timer's reference
    node->timer.fire = &fire_callback_timer;
    add_timer(&node->timer, when);
    return Handle{node};
  }
  // The one loop entry point that is safe from any thread: f runs on the loop thread soon.
  void call_soon_threadsafe(std::function<void()> f, SourceLocation where = SourceLocation::current());

  // Runs until stop() is called.
  void run_forever();
  void stop() noexcept { stopping_ = true; }
  // Runs until pred() is true after an iteration.
  template <class Pred>
  void run_until(Pred pred) {
    Running guard(*this);
    while (!pred()) run_once();
  }

  // The loop's exception handler (asyncio's): it receives what nobody else can, such as an
  // exception thrown by a callback, a task exception never retrieved, a failed connection
  // handler, or a debug-mode finding. The default prints to stderr; set_exception_handler(nullptr)
  // restores it, and get_exception_handler() is empty while the default is in use.
  using ExceptionHandler = std::function<void(const ExceptionContext& context)>;
  void set_exception_handler(ExceptionHandler handler) { exception_handler_ = std::move(handler); }
  const ExceptionHandler& get_exception_handler() const noexcept { return exception_handler_; }
  // Never throws: if the handler throws, the default handler reports that error together with
  // the original report ("Unhandled error in exception handler"), and the loop carries on.
  void call_exception_handler(const ExceptionContext& context) noexcept;
  // Prints context.describe() to stderr.
  static void default_exception_handler(const ExceptionContext& context) noexcept;

  // --- for the runtime layers above (tasks, streams, servers) -----------------------------------
  void schedule(detail::Runnable* r) { ready_.push(r); }
  void add_timer(detail::TimerNode* node, TimePoint when);
  void remove_timer(detail::TimerNode* node) noexcept;
  void add_watch(detail::IoWatch* watch);     // registers watch->fd (EPOLLET, in and out)
  void remove_watch(detail::IoWatch* watch) noexcept;
  std::uint64_t next_cancel_stamp() noexcept { return ++cancel_stamp_; }
  int task_budget() const noexcept { return task_budget_; }
  // Whether anything besides the running task could use the loop now: a ready runnable, a timer,
  // I/O or another thread's call. When nothing could, a spent budget refills without a yield.
  bool others_could_run() const noexcept { return !ready_.empty() || !timers_.empty() || outside_events(); }
  // While an observer is installed it sees every await of every task (awith::testing's sweeps).
  void set_await_observer(detail::AwaitObserver* observer) noexcept { await_observer_ = observer; }
  detail::AwaitObserver* await_observer() const noexcept { return await_observer_; }
  std::uint64_t last_cancel_stamp() const noexcept { return cancel_stamp_; }
  detail::TaskBase* current_task() const noexcept { return current_task_; }
  void set_current_task(detail::TaskBase* t) noexcept { current_task_ = t; }
  // Runs work on the default executor's threads, then completion on the loop thread (to_thread
  // builds on this). work must not throw. If the executor's shutdown stops waiting for the job
  // (executor_shutdown_timeout), completion never runs and is destroyed on the worker thread.
  void submit_to_executor(std::function<void()> work, std::function<void()> completion);
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
  bool outside_events() const noexcept;
  std::size_t poll_between_steps();
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
  detail::AwaitObserver* await_observer_ = nullptr;
  int task_budget_;
  detail::TaskBase* tasks_head_ = nullptr;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  detail::IoWatch wake_watch_;
  std::size_t watches_ = 0;
  // Task steps (and callbacks) between two I/O polls of a busy loop (tokio polls every 61).
  static constexpr unsigned kPollSteps = 64;
  unsigned steps_since_poll_ = 0;
  TimePoint virtual_now_{};
  bool running_ = false;
  bool stopping_ = false;
  bool closed_ = false;
  const void* owner_thread_;
  struct ThreadsafeCall {
    std::function<void()> fn;
    SourceLocation where;
  };
  std::mutex threadsafe_mutex_;
  std::vector<ThreadsafeCall> threadsafe_;
  std::vector<ThreadsafeCall> threadsafe_swap_;
  // Written under threadsafe_mutex_; read without it by the busy loop to decide whether to poll.
  std::atomic<bool> wake_pending_{false};
  std::unique_ptr<detail::ThreadPool> executor_;
  ExceptionHandler exception_handler_;
};

}  // namespace awith
