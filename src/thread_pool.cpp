#include "thread_pool.hpp"

#include <cstdio>

namespace awith::detail {

namespace {
using Duration = std::chrono::steady_clock::duration;

std::string describe_duration(Duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms < 1000) return std::to_string(ms) + " ms";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g s", static_cast<double>(ms) / 1000.0);
  return buf;
}

std::string count_of(std::size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}
}  // namespace

ThreadPool::ThreadPool(std::size_t max_threads, Post post)
    : state_(std::make_shared<State>(std::move(post))), max_threads_(max_threads) {}

ThreadPool::~ThreadPool() { shutdown(std::nullopt); }

void ThreadPool::submit(std::function<void()> work, std::function<void()> completion) {
  std::unique_lock lock(state_->mutex);
  state_->jobs.push_back(Job{std::move(work), std::move(completion)});
  if (state_->idle == 0 && threads_.size() < max_threads_) {
    threads_.emplace_back(&ThreadPool::worker, state_);
  } else {
    state_->work_available.notify_one();
  }
}

std::size_t ThreadPool::pending() const {
  std::lock_guard lock(state_->mutex);
  return state_->jobs.size() + state_->busy;
}

void ThreadPool::worker(std::shared_ptr<State> s) {
  std::unique_lock lock(s->mutex);
  for (;;) {
    ++s->idle;
    s->work_available.wait(lock, [&] { return s->stopping || !s->jobs.empty(); });
    --s->idle;
    if (s->jobs.empty()) return;  // stopping, nothing left
    Job job = std::move(s->jobs.front());
    s->jobs.pop_front();
    ++s->busy;
    lock.unlock();
    job.work();
    job.work = nullptr;
    lock.lock();
    // Posting under the lock: shutdown sets `abandoned` under it before the loop may be destroyed.
    std::function<void()> dropped;
    if (s->abandoned) {
      dropped = std::move(job.completion);
    } else {
      s->post(std::move(job.completion));
    }
    --s->busy;
    if (s->busy == 0 && s->jobs.empty()) s->all_done.notify_all();
    if (dropped) {  // destroyed without the lock: it may own arbitrary state
      lock.unlock();
      dropped = nullptr;
      lock.lock();
    }
  }
}

std::optional<std::string> ThreadPool::shutdown(std::optional<Duration> timeout) noexcept {
  std::shared_ptr<State> s = state_;
  std::unique_lock lock(s->mutex);
  s->stopping = true;
  s->work_available.notify_all();
  auto finished = [&] { return s->busy == 0 && s->jobs.empty(); };
  bool done;
  if (!timeout) {
    s->all_done.wait(lock, finished);
    done = true;
  } else {
    auto now = std::chrono::steady_clock::now();
    auto deadline = *timeout > std::chrono::steady_clock::time_point::max() - now
                        ? std::chrono::steady_clock::time_point::max()
                        : now + *timeout;
    done = s->all_done.wait_until(lock, deadline, finished);
  }
  if (done) {
    lock.unlock();
    for (auto& t : threads_) t.join();
    threads_.clear();
    lock.lock();
    s->stopping = false;
    return std::nullopt;
  }
  s->abandoned = true;
  std::size_t running = s->busy;
  std::deque<Job> dropped = std::move(s->jobs);
  s->jobs.clear();
  lock.unlock();
  for (auto& t : threads_) t.detach();  // the idle ones are already leaving
  threads_.clear();
  std::size_t queued = dropped.size();
  dropped.clear();
  try {
    state_ = std::make_shared<State>(s->post);
    std::string report = "the default executor did not finish within " + describe_duration(*timeout) + ": " +
                         count_of(running, "job still running was", "jobs still running were") +
                         " left on detached threads (results dropped)";
    if (queued > 0) report += "; " + count_of(queued, "queued job", "queued jobs") + " dropped";
    return report;
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace awith::detail
