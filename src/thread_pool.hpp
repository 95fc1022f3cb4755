// The loop's default executor: a bounded pool of threads started on demand.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace awith::detail {

class ThreadPool {
 public:
  explicit ThreadPool(std::size_t max_threads);
  ~ThreadPool();
  void submit(std::function<void()> job);
  // Waits for queued and running jobs, then joins every thread.
  void shutdown() noexcept;
  std::size_t pending() const;

 private:
  void worker();
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t max_threads_;
  std::size_t idle_ = 0;
  std::size_t busy_ = 0;
  bool stopping_ = false;
};

}  // namespace awith::detail
