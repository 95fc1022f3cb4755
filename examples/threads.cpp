// Threads and the event loop: asyncio.to_thread (blocking work off the loop, the loop keeps
// running) and asyncio.run_coroutine_threadsafe (another thread submits work onto the loop).
#include <awith/awith.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

using namespace std::chrono_literals;
using awith::Task;

namespace {

// A blocking call (think: a file hash or a legacy client library): 100 ms of not yielding.
long blocking_sum(long n) {
  std::this_thread::sleep_for(100ms);
  long s = 0;
  for (long i = 1; i <= n; ++i) s += i;
  return s;
}

Task<int> ticker(std::atomic<bool>& stop) {
  int ticks = 0;
  while (!stop) {
    co_await awith::sleep(10ms);
    ++ticks;
  }
  co_return ticks;
}

Task<std::string> greet(std::string who) {
  co_await awith::sleep(10ms);
  co_return "hello, " + who + " (from the loop thread)";
}

Task<void> amain() {
  std::puts("1. asyncio.to_thread: the blocking call runs on the default executor");
  std::atomic<bool> stop{false};
  auto ticks = awith::create_task(ticker(stop));
  long sum = co_await awith::to_thread([] { return blocking_sum(1000); });
  stop = true;
  int n = co_await ticks;
  std::printf("  to_thread -> %ld; meanwhile the loop was free: the 10 ms ticker ticked %d times\n", sum, n);

  std::puts("2. exceptions raised in the thread reach the awaiting task");
  try {
    co_await awith::to_thread([]() -> int { throw std::runtime_error("disk on fire"); });
  } catch (const std::runtime_error& e) {
    std::printf("  to_thread raised: %s\n", e.what());
  }

  std::puts("3. asyncio.run_coroutine_threadsafe: a plain thread submits a coroutine to this loop");
  awith::EventLoop& loop = awith::EventLoop::running();
  std::string answer;
  std::thread worker([&loop, &answer] {
    auto future = awith::run_coroutine_threadsafe(greet("worker thread"), loop);
    answer = future.get();  // blocks this thread only
  });
  // Keep the loop free to serve the submission while the thread waits for it.
  co_await awith::to_thread([&worker] { worker.join(); });
  std::printf("  future.result() -> %s\n", answer.c_str());
}

}  // namespace

int main() {
  awith::run(amain());
  std::puts("done");
  return 0;
}
