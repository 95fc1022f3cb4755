// Micro-benchmarks of the synchronization primitives and queues, keyed like the asyncio rows of the
// peer harness's micro suite (SHARED_BENCH; BM_<key>) so scripts/bench.sh puts them side by side.
// Each benchmark runs as the main task of a fresh loop. Counter ops_per_iteration: the time per
// operation is the time per iteration divided by it.
#include <benchmark/benchmark.h>

#include <awith/awith.hpp>
#include <vector>

using awith::Task;

namespace {

constexpr int kBatch = 1000;    // queue rows: items per producer/consumer pair
constexpr int kWaiters = 1000;  // condition row: tasks woken by one notify_all()

// async with lock: pass (uncontended), as asyncio's lock_uncontended row: the body does not wait,
// so it is a plain callable, as `pass` is no coroutine in Python.
Task<void> lock_uncontended(benchmark::State& state) {
  awith::Lock lock;
  for (auto _ : state) co_await awith::async_with(lock, [] {});
}

// The same with a coroutine body (one more frame per block).
Task<void> lock_uncontended_task_body(benchmark::State& state) {
  awith::Lock lock;
  for (auto _ : state) co_await awith::async_with(lock, []() -> Task<void> { co_return; });
}

// acquire() + release() by hand: the primitive's own cost, without async_with's body coroutine.
Task<void> lock_acquire_release(benchmark::State& state) {
  awith::Lock lock;
  for (auto _ : state) {
    co_await lock.acquire();
    lock.release();
  }
}

// Two tasks pass two Semaphore(0)s back and forth; every iteration is two hand-offs.
Task<void> semaphore_handoff(benchmark::State& state) {
  awith::Semaphore ping(0), pong(0);
  bool stop = false;
  auto partner = awith::create_task([&]() -> Task<void> {
    while (true) {
      co_await ping.acquire();
      if (stop) break;
      pong.release();
    }
  });
  for (auto _ : state) {
    ping.release();
    co_await pong.acquire();
  }
  stop = true;
  ping.release();
  co_await partner;
  state.counters["ops_per_iteration"] = 2;
}

// A producer task puts kBatch items, a consumer task gets them (asyncio's queue_pc_* rows).
Task<void> queue_producer_consumer(benchmark::State& state, std::size_t maxsize) {
  awith::Queue<int> q(maxsize);
  long sum = 0;
  for (auto _ : state) {
    auto producer = awith::create_task([&]() -> Task<void> {
      for (int i = 0; i < kBatch; ++i) co_await q.put(i);
    });
    for (int i = 0; i < kBatch; ++i) sum += co_await q.get();
    co_await producer;
  }
  benchmark::DoNotOptimize(sum);
  state.counters["ops_per_iteration"] = kBatch;
}

// put + get of an unbounded queue in one task: the queue's own cost, no task switch.
Task<void> queue_put_get(benchmark::State& state) {
  awith::Queue<int> q;
  long sum = 0;
  for (auto _ : state) {
    co_await q.put(1);
    sum += co_await q.get();
  }
  benchmark::DoNotOptimize(sum);
}

// notify_all() to kWaiters tasks waiting on a Condition, until every one has re-acquired the
// lock, run and waited again; per woken waiter.
Task<void> condition_notify_all(benchmark::State& state) {
  awith::Condition cond;
  awith::Event all_waiting;
  int waiting = 0;
  bool stop = false;
  std::vector<awith::TaskHandle<void>> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(awith::create_task([&]() -> Task<void> {
      co_await cond.acquire();
      while (!stop) {
        if (++waiting == kWaiters) all_waiting.set();
        co_await cond.wait();
      }
      cond.release();
    }));
  }
  co_await all_waiting.wait();
  for (auto _ : state) {
    all_waiting.clear();
    waiting = 0;
    co_await cond.acquire();
    cond.notify_all();
    cond.release();
    co_await all_waiting.wait();
  }
  stop = true;
  co_await cond.acquire();
  cond.notify_all();
  cond.release();
  co_await awith::gather(waiters);
  state.counters["ops_per_iteration"] = kWaiters;
}

void BM_lock_uncontended(benchmark::State& state) { awith::run(lock_uncontended(state)); }
void BM_lock_uncontended_task_body(benchmark::State& state) { awith::run(lock_uncontended_task_body(state)); }
void BM_lock_acquire_release(benchmark::State& state) { awith::run(lock_acquire_release(state)); }
void BM_semaphore_handoff(benchmark::State& state) { awith::run(semaphore_handoff(state)); }
void BM_queue_pc_unbounded(benchmark::State& state) { awith::run(queue_producer_consumer(state, 0)); }
void BM_queue_pc_bounded1(benchmark::State& state) { awith::run(queue_producer_consumer(state, 1)); }
void BM_queue_put_get(benchmark::State& state) { awith::run(queue_put_get(state)); }
void BM_condition_notify_all(benchmark::State& state) { awith::run(condition_notify_all(state)); }

}  // namespace

BENCHMARK(BM_lock_uncontended);
BENCHMARK(BM_lock_uncontended_task_body);
BENCHMARK(BM_lock_acquire_release);
BENCHMARK(BM_semaphore_handoff);
BENCHMARK(BM_queue_pc_unbounded);
BENCHMARK(BM_queue_pc_bounded1);
BENCHMARK(BM_queue_put_get);
BENCHMARK(BM_condition_notify_all);

BENCHMARK_MAIN();
