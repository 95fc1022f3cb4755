// create_task, TaskHandle and the cancellation model of docs/design.md: a cancelled task starts no
// new wait, a cancelled scope ends the CancelledError that leaves it, CancelledError is not a
// std::exception, and uncancel() is how code swallows one.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {
Task<int> after(Duration d, int v) {
  co_await sleep(d);
  co_return v;
}
}  // namespace

TEST(Tasks, CreateTaskRunsConcurrentlyAndIsAwaitable) {
  auto v = run(
      []() -> Task<int> {
        auto a = create_task(after(30ms, 1));
        auto b = create_task(after(10ms, 2));
        auto start = EventLoop::running().time();
        int sum = co_await a + co_await b;
        EXPECT_EQ(EventLoop::running().time() - start, 30ms);
        EXPECT_TRUE(a.done());
        EXPECT_EQ(a.result(), 1);
        co_return sum;
      }(),
      test::virtual_time());
  EXPECT_EQ(v, 3);
}

TEST(Tasks, Sleep0YieldsOnceInFifoOrder) {
  Trace trace;
  run([&]() -> Task<void> {
    auto worker = [&](std::string name) -> Task<void> {
      for (int i = 0; i < 3; ++i) {
        trace(name + std::to_string(i));
        co_await sleep(0);
      }
    };
    auto a = create_task(worker("a"));
    auto b = create_task(worker("b"));
    auto c = create_task(worker("c"));
    co_await a;
    co_await b;
    co_await c;
  }());
  EXPECT_EQ(trace.str(), "a0\nb0\nc0\na1\nb1\nc1\na2\nb2\nc2\n");
}

TEST(Tasks, CancelRaisesAtTheSuspensionPointAndTheTaskEndsCancelled) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      try {
        co_await sleep(1h);
      } catch (const CancelledError& e) {
        trace("cancelled: " + e.message());
        throw;
      }
    });
    co_await sleep(0);
    EXPECT_TRUE(t.cancel("stop"));
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_THROW(co_await t, CancelledError);
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(t.cancel());
    EXPECT_THROW(t.result(), CancelledError);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "cancelled: stop\n");
}

TEST(Tasks, CancelBeforeFirstStepSkipsTheBody) {
  bool ran = false;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      ran = true;
      co_return;
    });
    t.cancel();
    co_await sleep(0);
    EXPECT_TRUE(t.cancelled());
  }());
  EXPECT_FALSE(ran);
}

// CancelledError is not a std::exception, so catching std::exception does not swallow it.
TEST(Tasks, CatchStdExceptionDoesNotSwallowCancellation) {
  bool swallowed = false;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      try {
        co_await sleep(1h);
      } catch (const std::exception&) {
        swallowed = true;
      }
    });
    co_await sleep(0);
    t.cancel();
    EXPECT_THROW(co_await t, CancelledError);
  }(), test::virtual_time());
  EXPECT_FALSE(swallowed);
  static_assert(!std::is_base_of_v<std::exception, CancelledError>);
}

// A cancelled task starts no new wait, and this is where awith differs from asyncio: a swallowed
// cancellation is raised again at the next suspension point (asyncio would let the second sleep
// complete).
TEST(Tasks, CancellationIsLevelTriggered) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      try {
        co_await sleep(1h);
      } catch (const CancelledError&) {
        trace("first");
      }
      try {
        co_await sleep(1s);
        trace("slept (asyncio would get here)");
      } catch (const CancelledError&) {
        trace("second");
        throw;
      }
    });
    co_await sleep(0);
    t.cancel();
    EXPECT_THROW(co_await t, CancelledError);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "first\nsecond\n");
}

// uncancel() withdraws a request; with none left the task is no longer cancelled.
TEST(Tasks, UncancelWithdrawsTheRequest) {
  auto v = run([]() -> Task<int> {
    auto t = create_task([]() -> Task<int> {
      try {
        co_await sleep(1h);
      } catch (const CancelledError&) {
        EXPECT_EQ(current_task().cancelling(), 2);
        EXPECT_EQ(current_task().uncancel(), 1);
        EXPECT_EQ(current_task().uncancel(), 0);
      }
      co_await sleep(1s);  // no longer cancelled: this completes
      co_return 7;
    }());
    co_await sleep(0);
    t.cancel();
    t.cancel();
    co_return co_await t;
  }(), test::virtual_time());
  EXPECT_EQ(v, 7);
}

// Awaiting a task from a task that gets cancelled cancels the awaited task too (asyncio).
TEST(Tasks, CancellingTheAwaiterCancelsTheAwaited) {
  Trace trace;
  run([&]() -> Task<void> {
    auto inner = create_task([&]() -> Task<void> {
      try {
        co_await sleep(1h);
      } catch (const CancelledError&) {
        trace("inner cancelled");
        throw;
      }
    });
    auto outer = create_task([&]() -> Task<void> {
      co_await inner;
      trace("not reached");
    });
    co_await sleep(0);
    outer.cancel();
    EXPECT_THROW(co_await outer, CancelledError);
    EXPECT_TRUE(inner.cancelled());
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "inner cancelled\n");
}

TEST(Tasks, ShieldKeepsTheInnerTaskRunning) {
  Trace trace;
  run([&]() -> Task<void> {
    auto inner = create_task([&]() -> Task<int> {
      co_await sleep(10ms);
      trace("inner done");
      co_return 5;
    });
    auto outer = create_task([&]() -> Task<void> {
      co_await shield(inner);
    });
    co_await sleep(1ms);
    outer.cancel();
    EXPECT_THROW(co_await outer, CancelledError);
    EXPECT_FALSE(inner.done());
    EXPECT_EQ(co_await inner, 5);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "inner done\n");
}

TEST(Tasks, CurrentTaskAndAllTasks) {
  run([]() -> Task<void> {
    auto t = create_task([]() -> Task<void> { co_await sleep(1ms); }());
    EXPECT_EQ(all_tasks().size(), 2u);
    bool found = false;
    for (auto& r : all_tasks()) found = found || r.is(t);
    EXPECT_TRUE(found);
    co_await t;
    EXPECT_EQ(all_tasks().size(), 1u);
    EXPECT_EQ(all_tasks()[0], current_task());
  }(), test::virtual_time());
  EXPECT_THROW(current_task(), RuntimeError);
}

TEST(Tasks, DoneCallbacksRunSoonAfterCompletion) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task(after(1ms, 3));
    t.add_done_callback([&](TaskHandle<int>& h) { trace("done " + std::to_string(h.result())); });
    co_await t;
    trace("awaited");
    co_await sleep(0);
    t.add_done_callback([&](TaskHandle<int>&) { trace("late"); });
    co_await sleep(0);
  }(), test::virtual_time());
  // asyncio order: callbacks and awaiters are woken in registration order.
  EXPECT_EQ(trace.str(), "done 3\nawaited\nlate\n");
}

TEST(Tasks, ResultOfPendingTaskIsInvalidState) {
  run([]() -> Task<void> {
    auto t = create_task(after(1ms, 1));
    EXPECT_THROW(t.result(), InvalidStateError);
    EXPECT_THROW(t.exception(), InvalidStateError);
    co_await t;
    EXPECT_EQ(t.exception(), nullptr);
  }(), test::virtual_time());
}

TEST(Tasks, RunCancelsLeftoverTasksAndRunsTheirCleanup) {
  bool cleaned = false;
  run([&]() -> Task<void> {
    (void)create_task([&]() -> Task<void> {
      try {
        co_await sleep(1h);
      } catch (...) {
        cleaned = true;
        throw;
      }
    });
    co_await sleep(0);
  }(), test::virtual_time());
  EXPECT_TRUE(cleaned);
}

TEST(Tasks, DebugReportsNeverRetrievedExceptionAndNeverAwaitedCoroutine) {
  std::vector<std::string> reports;
  LoopOptions o;
  o.debug = true;
  o.virtual_clock = true;
  run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.describe()); });
    {
      auto t = create_task([]() -> Task<void> {
        throw std::runtime_error("lost");
        co_return;
      }());
      co_await sleep(0);
      co_await sleep(0);
    }
    { auto never = after(1ms, 1); }
  }(), o);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_NE(reports[0].find("never retrieved"), std::string::npos);
  EXPECT_NE(reports[0].find("lost"), std::string::npos);
  EXPECT_NE(reports[0].find("test_tasks.cpp"), std::string::npos);
  EXPECT_NE(reports[1].find("never awaited"), std::string::npos);
}

TEST(Tasks, ToThreadRunsOffTheLoop) {
  auto v = run([]() -> Task<int> {
    auto loop_thread = std::this_thread::get_id();
    auto other = co_await to_thread([] { return std::this_thread::get_id(); });
    EXPECT_NE(other, loop_thread);
    co_return co_await to_thread([] { return 21 * 2; });
  }());
  EXPECT_EQ(v, 42);
  EXPECT_THROW(run([]() -> Task<void> { co_await to_thread([] { throw std::runtime_error("x"); }); }()),
               std::runtime_error);
}

TEST(Tasks, RunCoroutineThreadsafe) {
  EventLoop loop;
  std::thread t([&] { loop.run_forever(); });
  auto fut = run_coroutine_threadsafe([]() -> Task<int> {
    co_await sleep(1ms);
    co_return 11;
  }(), loop);
  EXPECT_EQ(fut.get(), 11);
  auto slow = run_coroutine_threadsafe([]() -> Task<int> {
    co_await sleep(1h);
    co_return 0;
  }(), loop);
  EXPECT_FALSE(slow.wait_for(5ms));
  slow.cancel();
  EXPECT_THROW(slow.get(), CancelledError);
  loop.call_soon_threadsafe([&] { loop.stop(); });
  t.join();
}

// A reference from current_task() keeps the task's state alive: after the task has ended and every
// TaskHandle is gone, the reference still answers (done, cancelled, a cancel that does nothing).
TEST(Tasks, CurrentTaskReferenceOutlivesTheTask) {
  std::unique_ptr<TaskRef> kept;  // (std::optional<TaskRef> trips g++ 12's maybe-uninitialized)
  run([&]() -> Task<void> {
    co_await create_task([&]() -> Task<void> {
      kept = std::make_unique<TaskRef>(current_task());
      co_await sleep(1ms);
    });
    EXPECT_EQ(all_tasks().size(), 1u);
  }(), test::virtual_time());
  ASSERT_TRUE(kept);
  EXPECT_TRUE(kept->done());
  EXPECT_FALSE(kept->cancelled());
  EXPECT_FALSE(kept->cancel());
  EXPECT_EQ(kept->cancelling(), 0);
  EXPECT_NE(std::string(kept->where().file).find("test_tasks.cpp"), std::string::npos);
  kept.reset();
}

// all_tasks() references stay valid while their tasks end, and compare equal to the handle's task.
TEST(Tasks, AllTasksReferencesOutliveTheirTasks) {
  std::vector<TaskRef> refs;
  run([&]() -> Task<void> {
    auto child = create_task([]() -> Task<void> { co_await sleep(1h); });
    refs = all_tasks();
    EXPECT_EQ(refs.size(), 2u);
    int matches = 0;
    for (auto& r : refs) matches += r.is(child) ? 1 : 0;
    EXPECT_EQ(matches, 1);
    for (auto& r : refs) {
      if (r.is(child)) {
        EXPECT_TRUE(r.cancel("stop"));
      }
    }
    EXPECT_THROW(co_await child, CancelledError);
    TaskRef copy = refs[0];
    EXPECT_EQ(copy, refs[0]);
  }(), test::virtual_time());
  ASSERT_EQ(refs.size(), 2u);
  int cancelled = 0;
  for (auto& r : refs) {
    EXPECT_TRUE(r.done());
    cancelled += r.cancelled() ? 1 : 0;
  }
  EXPECT_EQ(cancelled, 1);
  EXPECT_NE(refs[0], refs[1]);
}

namespace {
// A condition a to_thread job blocks on until the test opens it.
struct Gate {
  std::mutex mutex;
  std::condition_variable cv;
  bool open = false;
  std::atomic<bool> entered{false};
  void wait() {
    entered = true;
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return open; });
  }
  void release() {
    std::lock_guard lock(mutex);
    open = true;
    cv.notify_all();
  }
};
}  // namespace

// A job that never returns (a hung getaddrinfo) cannot hold run() forever: the executor's
// shutdown waits executor_shutdown_timeout, reports through the exception handler and leaves the
// job's thread detached. Released after run() returned (the loop is gone), the thread finishes
// without touching the loop (ASan would see it) and drops the result.
TEST(Tasks, ExecutorShutdownStopsWaitingForAHungJob) {
  EXPECT_EQ(LoopOptions{}.executor_shutdown_timeout, std::optional<Duration>(std::chrono::seconds(300)));
  auto gate = std::make_shared<Gate>();
  std::vector<std::string> reports;
  LoopOptions options;
  options.executor_shutdown_timeout = 100ms;
  bool completed = false;
  auto start = std::chrono::steady_clock::now();
  run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.message); });
    (void)create_task([&, gate]() -> Task<void> {
      auto job = to_thread([gate] { gate->wait(); });  // named: see docs/design.md on g++ 12
      co_await job;
      completed = true;
    });
    for (int i = 0; i < 1000 && !gate->entered; ++i) co_await sleep(1ms);
    EXPECT_TRUE(gate->entered);
  }(), options);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 5s);
  EXPECT_FALSE(completed);
  EXPECT_EQ(reports, std::vector<std::string>{"the default executor did not finish within 100 ms: 1 job still "
                                               "running was left on detached threads (results dropped)"});
  // The detached worker holds the job (and so the gate) until it has dropped the result.
  std::weak_ptr<Gate> watch = gate;
  gate->release();
  gate.reset();
  for (int i = 0; i < 1000 && !watch.expired(); ++i) std::this_thread::sleep_for(1ms);
  EXPECT_TRUE(watch.expired());
}

// Within the bound, shutdown waits for a running job as before, and reports nothing.
TEST(Tasks, ExecutorShutdownWaitsForAJobWithinTheBound) {
  std::vector<std::string> reports;
  std::atomic<bool> finished{false};
  LoopOptions options;
  options.executor_shutdown_timeout = 10s;
  run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.message); });
    (void)create_task([&]() -> Task<void> {
      auto job = to_thread([&] {
        std::this_thread::sleep_for(50ms);
        finished = true;
      });
      co_await job;
    });
    co_await sleep(1ms);
  }(), options);
  EXPECT_TRUE(finished);
  EXPECT_TRUE(reports.empty());
  options.executor_shutdown_timeout = -1ms;
  EXPECT_THROW(run([]() -> Task<void> { co_return; }(), options), std::invalid_argument);
}
