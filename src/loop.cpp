#include "awith/loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <system_error>
#include <thread>

#include "awith/runtime.hpp"
#include "thread_pool.hpp"

namespace awith {

namespace {
thread_local EventLoop* tl_running_loop = nullptr;
thread_local char tl_thread_token;

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

bool env_debug() {
  const char* v = std::getenv("AWITH_DEBUG");
  return v && *v && std::strcmp(v, "0") != 0;
}
}  // namespace

namespace detail {
// True while any debug loop exists in the process: a cheap first test on hot paths (Task
// destruction); the reports themselves go only to a debug loop. Loops on several threads come
// and go at once, so the count is updated under a mutex and the flag is atomic.
std::atomic<bool> g_debug_enabled{false};

namespace {
std::mutex g_debug_loops_mutex;
int g_debug_loops = 0;

void count_debug_loop(int delta) noexcept {
  std::lock_guard lock(g_debug_loops_mutex);
  g_debug_loops += delta;
  g_debug_enabled.store(g_debug_loops > 0, std::memory_order_relaxed);
}
}  // namespace

void CallbackNode::run() {
  if (!cancelled) {
    try {
      invoke();
    } catch (...) {
      loop->call_exception_handler(ExceptionContext("Exception in callback", std::current_exception(), {}, where));
    }
  }
  release();
}

int poll_timeout_ms(TimePoint deadline, TimePoint now) noexcept {
  if (deadline <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  return ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max() : static_cast<int>(ms);
}

void CallbackNode::release() noexcept {
  if (--refs == 0) delete this;
}

void ReadyQueue::grow() {
  std::size_t cap = buf_.empty() ? 64 : buf_.size() * 2;
  std::vector<Runnable*> bigger(cap);
  for (std::size_t i = 0; i < size_; ++i) bigger[i] = buf_[(head_ + i) & (buf_.size() - 1)];
  buf_.swap(bigger);
  head_ = 0;
}
}  // namespace detail

void Handle::cancel() noexcept {
  if (!node_ || node_->cancelled) return;
  node_->cancelled = true;
  if (node_->timer.armed()) {
    node_->loop->remove_timer(&node_->timer);
    node_->release();  // the timer's reference
  }
}

EventLoop::EventLoop(LoopOptions options) : options_(options), owner_thread_(&tl_thread_token) {
  if (options_.task_budget < 0) throw std::invalid_argument("LoopOptions::task_budget must be >= 0");
  if (options_.executor_shutdown_timeout && *options_.executor_shutdown_timeout < Duration::zero())
    throw std::invalid_argument("LoopOptions::executor_shutdown_timeout must be >= 0");
  task_budget_ = options_.task_budget == 0 ? INT_MAX / 2 : options_.task_budget;
  if (env_debug()) options_.debug = true;
  if (options_.max_workers == 0)
    options_.max_workers = std::min<std::size_t>(32, std::thread::hardware_concurrency() + 4);
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw_errno("epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    ::close(epoll_fd_);
    throw_errno("eventfd");
  }
  wake_watch_.fd = wake_fd_;
  wake_watch_.on_event = [](detail::IoWatch* w) {
    std::uint64_t n;
    while (::read(w->fd, &n, sizeof n) > 0) {
    }
  };
  add_watch(&wake_watch_);
  watches_ = 0;  // the wake-up fd does not count as pending I/O
  virtual_now_ = Clock::now();
  if (options_.debug) detail::count_debug_loop(+1);
}

EventLoop::~EventLoop() {
  shutdown_executor();
  if (options_.debug) detail::count_debug_loop(-1);
  // Callbacks that never ran are released; tasks still alive are the owner's responsibility
  // (run() cancels and awaits them before destroying the loop).
  while (!ready_.empty()) {
    auto* r = ready_.pop();
    if (auto* cb = dynamic_cast<detail::CallbackNode*>(r)) cb->release();
  }
  for (auto* t : timers_) {
    t->heap_index = detail::TimerNode::kNotArmed;
    if (t->fire == &fire_callback_timer) {
      static_cast<detail::CallbackTimer*>(t)->owner->release();
    }
  }
  timers_.clear();
  ::close(wake_fd_);
  ::close(epoll_fd_);
  closed_ = true;
}

EventLoop* EventLoop::current() noexcept { return tl_running_loop; }

EventLoop& EventLoop::running() {
  if (!tl_running_loop) throw RuntimeError("no running event loop");
  return *tl_running_loop;
}

void EventLoop::check_thread(const char* what) const {
  if (owner_thread_ != &tl_thread_token)
    throw RuntimeError(std::string(what) +
                       "() called from a thread that does not own this loop; use call_soon_threadsafe");
}

TimePoint EventLoop::time() const noexcept { return options_.virtual_clock ? virtual_now_ : Clock::now(); }

EventLoop::Running::Running(EventLoop& l) : loop(l), previous(tl_running_loop) {
  if (loop.running_) throw RuntimeError("this event loop is already running");
  if (tl_running_loop) throw RuntimeError("cannot run an event loop while another loop is running");
  loop.owner_thread_ = &tl_thread_token;
  loop.running_ = true;
  tl_running_loop = &loop;
}

EventLoop::Running::~Running() {
  loop.running_ = false;
  tl_running_loop = previous;
}

void EventLoop::run_forever() {
  Running guard(*this);
  stopping_ = false;
  while (!stopping_) run_once();
  stopping_ = false;
}

void EventLoop::call_soon_threadsafe(std::function<void()> f, SourceLocation where) {
  detail::require_callable(f, "call_soon_threadsafe");
  bool need_wake;
  {
    std::lock_guard lock(threadsafe_mutex_);
    if (closed_) throw RuntimeError("call_soon_threadsafe() on a closed event loop");
    threadsafe_.push_back(ThreadsafeCall{std::move(f), where});
    need_wake = !wake_pending_.load(std::memory_order_relaxed);
    wake_pending_.store(true, std::memory_order_release);
  }
  if (need_wake) {
    std::uint64_t one = 1;
    while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

void EventLoop::drain_threadsafe() {
  {
    std::lock_guard lock(threadsafe_mutex_);
    if (threadsafe_.empty()) return;
    threadsafe_swap_.swap(threadsafe_);
    wake_pending_.store(false, std::memory_order_relaxed);
  }
  for (auto& call : threadsafe_swap_) call_soon(std::move(call.fn), call.where);
  threadsafe_swap_.clear();
}

void EventLoop::add_watch(detail::IoWatch* watch) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = watch;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, watch->fd, &ev) < 0) throw_errno("epoll_ctl(ADD)");
  if (!watch->background) ++watches_;
}

void EventLoop::remove_watch(detail::IoWatch* watch) noexcept {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, watch->fd, nullptr);
  if (!watch->background) --watches_;
}

void EventLoop::poll_io(int timeout_ms) {
  epoll_event events[128];
  int n = ::epoll_wait(epoll_fd_, events, 128, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return;
    throw_errno("epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    auto* w = static_cast<detail::IoWatch*>(events[i].data.ptr);
    std::uint32_t e = events[i].events;
    if (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) w->readable = true;
    if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) w->writable = true;
    if (e & (EPOLLHUP | EPOLLERR)) w->hangup = true;
    if (e & EPOLLRDHUP) w->peer_closed = true;
    w->on_event(w);
  }
  if (n > 0) drain_threadsafe();
}

void EventLoop::add_timer(detail::TimerNode* node, TimePoint when) {
  if (node->armed()) remove_timer(node);
  node->when = when;
  node->seq = ++timer_seq_;
  node->heap_index = timers_.size();
  timers_.push_back(node);
  heap_up(node->heap_index);
}

void EventLoop::remove_timer(detail::TimerNode* node) noexcept {
  std::size_t i = node->heap_index;
  if (i == detail::TimerNode::kNotArmed) return;
  node->heap_index = detail::TimerNode::kNotArmed;
  std::size_t last = timers_.size() - 1;
  if (i != last) {
    timers_[i] = timers_[last];
    timers_[i]->heap_index = i;
    timers_.pop_back();
    heap_down(i);
    heap_up(i);
  } else {
    timers_.pop_back();
  }
}

bool EventLoop::heap_less(std::size_t a, std::size_t b) const noexcept {
  const auto* x = timers_[a];
  const auto* y = timers_[b];
  return x->when < y->when || (x->when == y->when && x->seq < y->seq);
}

void EventLoop::heap_up(std::size_t i) noexcept {
  while (i > 0) {
    std::size_t parent = (i - 1) / 2;
    if (!heap_less(i, parent)) break;
    std::swap(timers_[i], timers_[parent]);
    timers_[i]->heap_index = i;
    timers_[parent]->heap_index = parent;
    i = parent;
  }
}

void EventLoop::heap_down(std::size_t i) noexcept {
  for (;;) {
    std::size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < timers_.size() && heap_less(l, m)) m = l;
    if (r < timers_.size() && heap_less(r, m)) m = r;
    if (m == i) return;
    std::swap(timers_[i], timers_[m]);
    timers_[i]->heap_index = i;
    timers_[m]->heap_index = m;
    i = m;
  }
}

void EventLoop::fire_callback_timer(detail::TimerNode* node) {
  auto* cb = static_cast<detail::CallbackTimer*>(node)->owner;
  cb->loop->schedule(cb);  // the timer's reference moves to the ready queue
}

void EventLoop::run_timers(TimePoint now) {
  while (!timers_.empty() && timers_.front()->when <= now) {
    auto* node = timers_.front();
    remove_timer(node);
    node->fire(node);
  }
}

bool EventLoop::outside_events() const noexcept {
  return watches_ > 0 || wake_pending_.load(std::memory_order_acquire) ||
         detail::signal_arrived.load(std::memory_order_acquire);
}

// Between two task steps once kPollSteps steps ran since the last poll: what I/O and due timers
// woke runs next, ahead of the rest of this iteration, so their latency is bounded by kPollSteps
// steps however many tasks are ready. Returns how many runnables it put at the front.
std::size_t EventLoop::poll_between_steps() {
  steps_since_poll_ = 0;
  bool events = outside_events();
  bool timer_due = !timers_.empty() && timers_.front()->when <= time();
  if (!events && !timer_due) return 0;
  std::size_t before = ready_.size();
  if (events) poll_io(0);
  if (!timers_.empty()) run_timers(time());
  std::size_t woke = ready_.size() - before;
  ready_.move_back_to_front(woke);
  return woke;
}

void EventLoop::run_once() {
  // Poll I/O when idle, and after every kPollSteps task steps while busy (also in the middle of
  // an iteration), so that ready tasks cannot starve I/O, timers or other threads'
  // call_soon_threadsafe; a busy loop with none of them skips the syscall.
  // With more than kPollSteps runnables ready, the poll and the due timers wait for the poll
  // between steps that this iteration is sure to reach: what they wake then runs first, instead
  // of behind every runnable already queued. With fewer, they are queued at the back (asyncio's
  // order).
  bool busy = !ready_.empty();
  bool poll_between = ready_.size() > kPollSteps;
  if (!busy || (!poll_between && steps_since_poll_ >= kPollSteps && outside_events())) {
    steps_since_poll_ = 0;
    int timeout_ms = 0;
    if (!busy && !stopping_) {
      if (timers_.empty()) {
        timeout_ms = -1;
        if (options_.virtual_clock && watches_ == 0 && pending_io_waits == 0 &&
            (!executor_ || executor_->pending() == 0)) {
          std::lock_guard lock(threadsafe_mutex_);
          if (threadsafe_.empty())
            throw RuntimeError("deadlock: every task waits and nothing can wake one (virtual clock)");
        }
      } else if (options_.virtual_clock) {
        bool outside_work = watches_ > 0 || pending_io_waits > 0 || (executor_ && executor_->pending() > 0);
        if (!outside_work) {
          virtual_now_ = std::max(virtual_now_, timers_.front()->when);
        } else {
          timeout_ms = 1;  // let threads and sockets progress before jumping
        }
      } else {
        timeout_ms = detail::poll_timeout_ms(timers_.front()->when, Clock::now());
      }
    }
    poll_io(timeout_ms);
    if (options_.virtual_clock && timeout_ms == 1 && ready_.empty() && !timers_.empty()) {
      virtual_now_ = std::max(virtual_now_, timers_.front()->when);
    }
  }
  if (!poll_between && !timers_.empty()) run_timers(time());

  std::size_t n = ready_.size();
  if (!options_.debug) {
    while (n > 0) {
      --n;
      ready_.pop()->run();
      if (++steps_since_poll_ >= kPollSteps && n > 0) n += poll_between_steps();
    }
    return;
  }
  while (n > 0) {
    --n;
    auto* r = ready_.pop();
    // Held across run() so that a slow step can still be described after it ended.
    auto* task = dynamic_cast<detail::TaskBase*>(r);
    auto* callback = dynamic_cast<detail::CallbackNode*>(r);
    if (task) task->add_ref();
    if (callback) ++callback->refs;
    auto start = Clock::now();
    r->run();
    auto took = Clock::now() - start;
    if (took > options_.slow_callback_duration) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(took).count();
      std::string message = std::string("Executing ") + (task ? "a task step" : "a callback") + " took " +
                            std::to_string(ms) + " ms (blocked the loop)";
      std::optional<SourceLocation> where;
      if (callback) where = callback->where;
      call_exception_handler(ExceptionContext(std::move(message), nullptr, task ? task->describe() : "", where));
    }
    if (task) task->release();
    if (callback) callback->release();
    if (++steps_since_poll_ >= kPollSteps && n > 0) n += poll_between_steps();
  }
}

void EventLoop::call_exception_handler(const ExceptionContext& context) noexcept {
  if (!exception_handler_) {
    default_exception_handler(context);
    return;
  }
  try {
    ExceptionHandler handler = exception_handler_;  // the handler may replace itself
    handler(context);
  } catch (...) {
    // Report both the handler's failure and the report it failed on, then carry on (asyncio).
    try {
      default_exception_handler(ExceptionContext("Unhandled error in exception handler", std::current_exception()));
    } catch (...) {
    }
    default_exception_handler(context);
  }
}

void EventLoop::default_exception_handler(const ExceptionContext& context) noexcept {
  try {
    std::string text = context.describe();
    std::fprintf(stderr, "awith: %s\n", text.c_str());
  } catch (...) {
    std::fprintf(stderr, "awith: %s\n", context.message.c_str());
  }
}

void EventLoop::submit_to_executor(std::function<void()> work, std::function<void()> completion) {
  if (!executor_) {
    executor_ = std::make_unique<detail::ThreadPool>(
        options_.max_workers, [this](std::function<void()> f) { call_soon_threadsafe(std::move(f)); });
  }
  executor_->submit(std::move(work), std::move(completion));
}

void EventLoop::shutdown_executor() noexcept {
  if (!executor_) return;
  if (auto report = executor_->shutdown(options_.executor_shutdown_timeout))
    call_exception_handler(ExceptionContext(std::move(*report)));
}

void EventLoop::abandon_tasks() noexcept {
  EventLoop* previous = tl_running_loop;
  tl_running_loop = this;
  while (tasks_head_) tasks_head_->abandon();
  tl_running_loop = previous;
}

void EventLoop::register_task(detail::TaskBase* t) noexcept {
  t->next_live = tasks_head_;
  t->prev_live = nullptr;
  if (tasks_head_) tasks_head_->prev_live = t;
  tasks_head_ = t;
}

void EventLoop::unregister_task(detail::TaskBase* t) noexcept {
  if (t->prev_live) {
    t->prev_live->next_live = t->next_live;
  } else {
    tasks_head_ = t->next_live;
  }
  if (t->next_live) t->next_live->prev_live = t->prev_live;
  t->next_live = t->prev_live = nullptr;
}

}  // namespace awith
