// The loop's default executor: a bounded pool of threads started on demand.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace awith::detail {

class ThreadPool {
 public:
  // How a finished job's completion reaches the loop thread (the loop's call_soon_threadsafe).
  using Post = std::function<void(std::function<void()>)>;
  ThreadPool(std::size_t max_threads, Post post);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Runs work on a pool thread, then posts completion. work must not throw.
  void submit(std::function<void()> work, std::function<void()> completion);
  // Runs the queued jobs and waits for every job to finish, at most `timeout` (nullopt: no bound),
  // then joins the threads. If the bound passes, queued jobs are dropped and the threads still
  // running a job are detached: they never post again, so the loop may be destroyed; the pool is
  // usable again with fresh threads. Returns the report for the exception handler in that case.
  std::optional<std::string> shutdown(std::optional<std::chrono::steady_clock::duration> timeout) noexcept;
  // Jobs queued or running.
  std::size_t pending() const;

 private:
  struct Job {
    std::function<void()> work;
    std::function<void()> completion;
  };
  // Shared with the workers, so a detached worker keeps it alive after the pool is gone.
  struct State {
    explicit State(Post p) : post(std::move(p)) {}
    std::mutex mutex;
    std::condition_variable work_available;
    std::condition_variable all_done;
    std::deque<Job> jobs;
    std::size_t idle = 0;
    std::size_t busy = 0;
    bool stopping = false;
    bool abandoned = false;  // the loop stopped waiting: completions are dropped, never posted
    Post post;
  };
  static void worker(std::shared_ptr<State> state);

  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
  std::size_t max_threads_;
};

}  // namespace awith::detail
