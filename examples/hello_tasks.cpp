// The asyncio "Coroutines and Tasks" tour in C++: asyncio.run, create_task, gather, sleep,
// cancellation. Python equivalents are quoted above each step.
#include <awith/awith.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using awith::Task;

namespace {

awith::TimePoint g_start;

double elapsed() {
  return std::chrono::duration<double>(awith::EventLoop::running().time() - g_start).count();
}

// async def say_after(delay, what): await asyncio.sleep(delay); print(what)
Task<void> say_after(awith::Duration delay, std::string what) {
  co_await awith::sleep(delay);
  std::printf("  [%.2fs] %s\n", elapsed(), what.c_str());
}

// async def factorial(name, number): ... await asyncio.sleep(0.01) per step; return f
Task<long> factorial(std::string name, int number) {
  long f = 1;
  for (int i = 2; i <= number; ++i) {
    std::printf("  Task %s: compute factorial(%d), currently i=%d...\n", name.c_str(), number, i);
    co_await awith::sleep(10ms);
    f *= i;
  }
  std::printf("  Task %s: factorial(%d) = %ld\n", name.c_str(), number, f);
  co_return f;
}

Task<void> fail_after(awith::Duration delay) {
  co_await awith::sleep(delay);
  throw std::runtime_error("boom");
}

Task<int> forever() {
  for (;;) co_await awith::sleep(1h);
}

Task<void> amain() {
  g_start = awith::EventLoop::running().time();

  std::puts("1. await coroutines one after the other (sequential: ~0.15s)");
  co_await say_after(50ms, "hello");
  co_await say_after(100ms, "world");

  std::puts("2. asyncio.create_task: both run concurrently (~0.10s more)");
  g_start = awith::EventLoop::running().time();
  auto t1 = awith::create_task(say_after(50ms, "hello"));
  auto t2 = awith::create_task(say_after(100ms, "world"));
  co_await t1;
  co_await t2;

  std::puts("3. asyncio.gather: results in argument order, whatever order they finish in");
  auto [a, b, c] = co_await awith::gather(factorial("A", 2), factorial("B", 3), factorial("C", 4));
  std::printf("  gather -> (%ld, %ld, %ld)\n", a, b, c);

  std::puts("4. asyncio.sleep(0) yields once: ready tasks take turns in FIFO order");
  std::vector<Task<void>> turns;
  for (const char* name : {"x", "y", "z"}) {
    turns.push_back([](std::string n) -> Task<void> {
      for (int i = 0; i < 2; ++i) {
        std::printf("  %s%d", n.c_str(), i);
        co_await awith::sleep(0);
      }
    }(name));
  }
  co_await awith::gather(turns);
  std::puts("");

  std::puts("5. Task.cancel(): the task's await raises CancelledError (not a std::exception)");
  auto stuck = awith::create_task(forever());
  co_await awith::sleep(0);
  stuck.cancel("no longer needed");
  try {
    co_await stuck;
  } catch (const awith::CancelledError& e) {
    std::printf("  caught CancelledError(\"%s\"); cancelled()=%s\n", e.message().c_str(),
                stuck.cancelled() ? "true" : "false");
  }

  g_start = awith::EventLoop::running().time();
  std::puts("6. an exception in a child propagates out of gather");
  try {
    co_await awith::gather(say_after(20ms, "the other child still finishes"), fail_after(5ms));
  } catch (const std::runtime_error& e) {
    std::printf("  [%.2fs] gather raised: %s; tasks still alive: %zu (main + the other child)\n", elapsed(), e.what(),
                awith::all_tasks().size());
  }
  co_await awith::sleep(30ms);
  std::printf("7. asyncio.all_tasks(): %zu (only main is left)\n", awith::all_tasks().size());
}

}  // namespace

int main() {
  // asyncio.run(main())
  awith::run(amain());
  std::puts("done");
  return 0;
}
