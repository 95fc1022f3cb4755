// The event loop: call_soon order, timers, virtual clock, threads, misuse errors.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

TEST(Loop, CallSoonRunsInFifoOrder) {
  EventLoop loop;
  Trace trace;
  loop.call_soon([&] { trace("a"); });
  loop.call_soon([&] {
    trace("b");
    loop.call_soon([&] {
      trace("d");
      loop.stop();
    });
  });
  loop.call_soon([&] { trace("c"); });
  loop.run_forever();
  EXPECT_EQ(trace.str(), "a\nb\nc\nd\n");
}

TEST(Loop, CancelledHandleNeverRuns) {
  EventLoop loop;
  int ran = 0;
  auto h = loop.call_soon([&] { ++ran; });
  h.cancel();
  EXPECT_TRUE(h.cancelled());
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(ran, 0);
}

TEST(Loop, TimersFireInDeadlineThenArmingOrder) {
  EventLoop loop(test::virtual_time());
  Trace trace;
  auto start = loop.time();
  loop.call_later(30ms, [&] { trace("30"); });
  loop.call_later(10ms, [&] { trace("10a"); });
  loop.call_later(10ms, [&] { trace("10b"); });
  auto cancelled = loop.call_later(20ms, [&] { trace("20"); });
  loop.call_at(start + 40ms, [&] {
    trace("40");
    loop.stop();
  });
  cancelled.cancel();
  loop.run_forever();
  EXPECT_EQ(trace.str(), "10a\n10b\n30\n40\n");
  EXPECT_EQ(loop.time() - start, 40ms);
}

TEST(Loop, ManyTimersArmAndCancelInAnyOrder) {
  EventLoop loop(test::virtual_time());
  std::vector<Handle> handles;
  std::vector<int> fired;
  for (int i = 0; i < 1000; ++i)
    handles.push_back(loop.call_later(std::chrono::milliseconds((i * 7919) % 1000), [&fired, i] { fired.push_back(i); }));
  for (int i = 0; i < 1000; i += 3) handles[i].cancel();
  loop.call_later(2s, [&] { loop.stop(); });
  loop.run_forever();
  EXPECT_EQ(fired.size(), 1000u - 334u);
  for (std::size_t i = 1; i < fired.size(); ++i)
    EXPECT_LE((fired[i - 1] * 7919) % 1000, (fired[i] * 7919) % 1000);
}

TEST(Loop, VirtualClockJumpsAndRealClockWaits) {
  auto elapsed = [](bool virt) {
    LoopOptions o;
    o.virtual_clock = virt;
    auto wall = Clock::now();
    run([]() -> Task<void> { co_await sleep(50ms); }(), o);
    return Clock::now() - wall;
  };
  EXPECT_LT(elapsed(true), 40ms);
  EXPECT_GE(elapsed(false), 50ms);
}

TEST(Loop, VirtualClockReportsDeadlockAndRunStillCleansUp) {
  // A task suspended on something that can never wake it: with virtual time the loop sees that
  // nothing can happen and raises instead of hanging; run() then ends the stuck frames.
  bool cleaned = false;
  EXPECT_THROW(run(
                   [&]() -> Task<void> {
                     struct Flag {
                       bool* b;
                       ~Flag() { *b = true; }
                     } flag{&cleaned};
                     co_await std::suspend_always{};
                   }(),
                   test::virtual_time()),
               RuntimeError);
  EXPECT_TRUE(cleaned);
}

TEST(Loop, CallSoonThreadsafeWakesTheLoop) {
  int got = run([]() -> Task<int> {
    auto& loop = EventLoop::running();
    std::atomic<int> value{0};
    std::thread t([&] { loop.call_soon_threadsafe([&] { value = 5; }); });
    while (value == 0) co_await sleep(1ms);
    t.join();
    co_return value.load();
  }());
  EXPECT_EQ(got, 5);
}

TEST(Loop, LoopOnlyCallsFromAnotherThreadThrow) {
  EventLoop loop;
  std::atomic<bool> threw{false};
  std::thread([&] {
    try {
      loop.call_soon([] {});
    } catch (const RuntimeError&) {
      threw = true;
    }
  }).join();
  EXPECT_TRUE(threw);
}

TEST(Loop, RunInsideRunningLoopIsAnError) {
  EXPECT_THROW(run([]() -> Task<void> { run([]() -> Task<void> { co_return; }()); co_return; }()), RuntimeError);
}

TEST(Loop, ExceptionHandlerReportsSlowCallbacksInDebugMode) {
  LoopOptions o;
  o.debug = true;
  o.slow_callback_duration = 5ms;
  EventLoop loop(o);
  std::vector<std::string> reports;
  loop.set_exception_handler([&](const std::string& m) { reports.push_back(m); });
  loop.call_soon([] { std::this_thread::sleep_for(20ms); });
  loop.call_soon([&] { loop.stop(); });
  loop.run_forever();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("blocked the loop"), std::string::npos);
}
