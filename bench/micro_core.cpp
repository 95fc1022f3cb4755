// Micro-benchmarks of the core runtime, measured like the peer harness's micro suite (SHARED_BENCH:
// asyncio, uvloop, Asio) so scripts/bench.sh can print them in one table. Each benchmark runs as
// the main task of a fresh loop. Counters: ops_per_iteration (the time per operation is the time
// per iteration divided by it) and bytes_per_task (the memory row).
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <unistd.h>

#include <awith/awith.hpp>
#if __has_include(<awith/context.hpp>) && __has_include(<awith/exit_stack.hpp>)
#include <awith/context.hpp>
#include <awith/exit_stack.hpp>
#define AWITH_BENCH_CONTEXT 1
#endif
#if defined(AWITH_BENCH_CONTEXT) && __has_include(<awith/timeout.hpp>) && __has_include(<awith/task_group.hpp>)
#include <awith/task_group.hpp>
#include <awith/timeout.hpp>
#define AWITH_BENCH_STRUCTURED 1
#endif
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using awith::Task;

namespace {

constexpr int kBatch = 1000;  // call_soon and timers: the loop runs once per batch, as the peers do

Task<long> leaf(long x) { co_return x + 1; }

// co_await of a nested Task (asyncio: `await coro()`).
Task<void> await_nested_task(benchmark::State& state) {
  long acc = 0;
  for (auto _ : state) acc = co_await leaf(acc);
  benchmark::DoNotOptimize(acc);
}

// create_task + await it (asyncio: `await loop.create_task(coro())`).
Task<void> create_task_await(benchmark::State& state) {
  long acc = 0;
  for (auto _ : state) acc = co_await awith::create_task(leaf(acc));
  benchmark::DoNotOptimize(acc);
}

Task<void> yield_until(const bool& stop) {
  while (!stop) co_await awith::sleep(0);
}

// sleep(0) ping between two tasks; every iteration is two switches.
Task<void> sleep0_switch(benchmark::State& state) {
  bool stop = false;
  auto partner = awith::create_task(yield_until(stop));
  for (auto _ : state) co_await awith::sleep(0);
  stop = true;
  co_await partner;
  state.counters["ops_per_iteration"] = 2;
}

// call_soon(cb) in batches of kBatch; the sleep(0) behind them lets the loop run the batch.
Task<void> call_soon_batch(benchmark::State& state) {
  auto& loop = awith::EventLoop::running();
  long ran = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) loop.call_soon([&ran] { ++ran; });
    co_await awith::sleep(0);
  }
  if (ran != static_cast<long>(state.iterations()) * kBatch) state.SkipWithError("call_soon: callbacks lost");
  state.counters["ops_per_iteration"] = kBatch;
}

// call_later(10 s, cb) + Handle::cancel(), in batches of kBatch with one loop run per batch.
Task<void> timer_arm_cancel(benchmark::State& state) {
  auto& loop = awith::EventLoop::running();
  long ran = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) loop.call_later(10s, [&ran] { ++ran; }).cancel();
    co_await awith::sleep(0);
  }
  if (ran != 0) state.SkipWithError("timer: a cancelled callback ran");
  state.counters["ops_per_iteration"] = kBatch;
}

std::size_t heap_in_use() {
  struct mallinfo2 m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

std::size_t resident_bytes() {
  unsigned long size = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

constexpr std::size_t kMemoryTasks = 100'000;

Task<void> sleep_long() { co_await awith::sleep(1h); }

// Bytes per task suspended on sleep: what `measure` grows by while `count` tasks are created and
// all start and suspend (task state, frame, timer heap, handles).
Task<double> bytes_per_pending_task(std::size_t count, std::size_t (*measure)()) {
  std::size_t before = measure();
  std::vector<awith::TaskHandle<void>> tasks;
  tasks.reserve(count);
  for (std::size_t i = 0; i < count; ++i) tasks.push_back(awith::create_task(sleep_long()));
  co_await awith::sleep(0);  // every task runs to its sleep
  std::size_t after = measure();
  for (auto& t : tasks) t.cancel();
  for (auto& t : tasks) {
    try {
      co_await t;
    } catch (const awith::CancelledError&) {
    }
  }
  co_return static_cast<double>(after - before) / static_cast<double>(count);
}

void BM_co_await_nested_task(benchmark::State& state) { awith::run(await_nested_task(state)); }
void BM_create_task_await(benchmark::State& state) { awith::run(create_task_await(state)); }
void BM_sleep0_switch(benchmark::State& state) { awith::run(sleep0_switch(state)); }
void BM_call_soon(benchmark::State& state) { awith::run(call_soon_batch(state)); }
void BM_timer_arm_cancel(benchmark::State& state) { awith::run(timer_arm_cancel(state)); }

// Heap bytes (mallinfo2), in a fresh thread so that its loop starts from an empty frame pool:
// recycled frames would hide bytes.
void BM_pending_task_memory(benchmark::State& state) {
  double bytes = 0;
  for (auto _ : state) {
    std::thread fresh([&bytes] { bytes = awith::run(bytes_per_pending_task(kMemoryTasks, heap_in_use)); });
    fresh.join();
  }
  state.counters["bytes_per_task"] = bytes;
}

// Resident bytes, measured in a fresh process (this binary run with --rss-child) as the peers do:
// memory this process freed earlier would otherwise be reused without growing the RSS.
std::string g_self_exe;

void BM_pending_task_rss(benchmark::State& state) {
  double bytes = 0;
  for (auto _ : state) {
    std::string command = "'" + g_self_exe + "' --rss-child " + std::to_string(kMemoryTasks);
    std::FILE* child = ::popen(command.c_str(), "r");
    if (!child || std::fscanf(child, "%lf", &bytes) != 1) state.SkipWithError("--rss-child gave no number");
    if (child && ::pclose(child) != 0) state.SkipWithError("--rss-child failed");
  }
  state.counters["bytes_per_task"] = bytes;
}


#ifdef AWITH_BENCH_CONTEXT
// --- context managers (asyncio's rows use a class ACM and `await coro()` as the body) -----------

Task<void> trivial() { co_return; }

struct ClassManager {
  Task<ClassManager&> aenter() { co_return *this; }
  Task<bool> aexit(std::exception_ptr) { co_return false; }
};

// async_with(ClassManager{}, body) where the body awaits a trivial coroutine.
Task<void> async_with_class_manager(benchmark::State& state) {
  for (auto _ : state) co_await awith::async_with(ClassManager{}, [](ClassManager&) { return trivial(); });
}

// The same body without the manager: what async_with adds is the difference to the row above.
Task<void> async_with_body_alone(benchmark::State& state) {
  ClassManager manager;
  auto body = [](ClassManager&) { return trivial(); };
  for (auto _ : state) co_await body(manager);
}

// aenter, body and aexit awaited by hand (asyncio: acm_class_manual).
Task<void> class_manager_by_hand(benchmark::State& state) {
  for (auto _ : state) {
    ClassManager manager;
    co_await manager.aenter();
    co_await trivial();
    co_await manager.aexit(nullptr);
  }
}

awith::AsyncContextManager<void> empty_generator_manager() { co_yield {}; }

// A generator manager (@asynccontextmanager) entered and exited around an empty body.
Task<void> generator_manager(benchmark::State& state) {
  for (auto _ : state) co_await awith::async_with(empty_generator_manager(), [] { return trivial(); });
}

constexpr int kStackEntries = 10;

// An AsyncExitStack entering kStackEntries class managers, per entry.
Task<void> exit_stack_entry(benchmark::State& state) {
  for (auto _ : state) {
    co_await awith::async_with(awith::AsyncExitStack{}, [](awith::AsyncExitStack& stack) -> Task<void> {
      for (int i = 0; i < kStackEntries; ++i) co_await stack.enter_async_context(ClassManager{});
    });
  }
  state.counters["ops_per_iteration"] = kStackEntries;
}

void BM_async_with_class_acm(benchmark::State& state) { awith::run(async_with_class_manager(state)); }
void BM_async_with_body_alone(benchmark::State& state) { awith::run(async_with_body_alone(state)); }
void BM_class_acm_by_hand(benchmark::State& state) { awith::run(class_manager_by_hand(state)); }
void BM_generator_manager(benchmark::State& state) { awith::run(generator_manager(state)); }
void BM_exit_stack_entry(benchmark::State& state) { awith::run(exit_stack_entry(state)); }
#endif

#ifdef AWITH_BENCH_STRUCTURED
// --- timeouts and task groups ---------------------------------------------------------------------

// async_with(timeout(10 s), body awaiting a trivial coroutine), never firing; the loop runs once
// per batch, as in the asyncio row.
Task<void> timeout_not_fired(benchmark::State& state) {
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) co_await awith::async_with(awith::timeout(10s), [](awith::Timeout&) { return trivial(); });
    co_await awith::sleep(0);
  }
  state.counters["ops_per_iteration"] = kBatch;
}

constexpr int kGroupChildren = 10'000;

// A TaskGroup that spawns kGroupChildren trivial children and joins them, per child.
Task<void> taskgroup_child(benchmark::State& state) {
  for (auto _ : state) {
    co_await awith::async_with(awith::TaskGroup(), [](awith::TaskGroup& group) -> Task<void> {
      for (int i = 0; i < kGroupChildren; ++i) group.create_task(trivial());
      co_return;
    });
  }
  state.counters["ops_per_iteration"] = kGroupChildren;
}

void BM_timeout_not_fired(benchmark::State& state) { awith::run(timeout_not_fired(state)); }
void BM_taskgroup_child(benchmark::State& state) { awith::run(taskgroup_child(state)); }
#endif

}  // namespace

BENCHMARK(BM_co_await_nested_task);
BENCHMARK(BM_create_task_await);
BENCHMARK(BM_sleep0_switch);
BENCHMARK(BM_call_soon);
BENCHMARK(BM_timer_arm_cancel);
#ifdef AWITH_BENCH_CONTEXT
BENCHMARK(BM_async_with_class_acm);
BENCHMARK(BM_async_with_body_alone);
BENCHMARK(BM_class_acm_by_hand);
BENCHMARK(BM_generator_manager);
BENCHMARK(BM_exit_stack_entry);
#endif
#ifdef AWITH_BENCH_STRUCTURED
BENCHMARK(BM_timeout_not_fired);
BENCHMARK(BM_taskgroup_child);
#endif
BENCHMARK(BM_pending_task_memory)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pending_task_rss)->Iterations(1)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--rss-child") == 0) {
    std::size_t count = std::strtoul(argv[2], nullptr, 10);
    std::printf("%.1f\n", awith::run(bytes_per_pending_task(count, resident_bytes)));
    return 0;
  }
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return 1;
  g_self_exe.assign(exe, static_cast<std::size_t>(n));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
