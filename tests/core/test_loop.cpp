// The event loop: call_soon order, timers, virtual clock, threads, misuse errors, the exception
// handler and what reaches it.
#include <gtest/gtest.h>

#include <signal.h>
#include <time.h>

#include <atomic>
#include <climits>
#include <memory>
#include <stdexcept>
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

TEST(Loop, ExceptionHandlerReportsSlowCallbacksAndTaskStepsInDebugMode) {
  LoopOptions o;
  o.debug = true;
  o.slow_callback_duration = 5ms;
  EventLoop loop(o);
  std::vector<ExceptionContext> reports;
  loop.set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
  const unsigned line = __LINE__; loop.call_soon([] { std::this_thread::sleep_for(20ms); });
  auto slow_step = create_task_on(loop, []() -> Task<void> {
    std::this_thread::sleep_for(20ms);
    co_return;
  }());
  loop.call_soon([&] { loop.call_soon([&] { loop.stop(); }); });
  loop.run_forever();
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_NE(reports[0].message.find("Executing a callback took"), std::string::npos) << reports[0].message;
  EXPECT_NE(reports[0].message.find("blocked the loop"), std::string::npos) << reports[0].message;
  EXPECT_EQ(reports[0].exception, nullptr);
  EXPECT_TRUE(reports[0].task.empty());
  ASSERT_TRUE(reports[0].where.has_value());
  EXPECT_EQ(reports[0].where->line, line);
  EXPECT_NE(reports[1].message.find("Executing a task step took"), std::string::npos) << reports[1].message;
  EXPECT_NE(reports[1].task.find("task created at test_loop.cpp:"), std::string::npos) << reports[1].task;
  EXPECT_FALSE(reports[1].where.has_value());
  EXPECT_TRUE(slow_step.done());
}

namespace {
// The exception's type and what() as the default handler prints them, or "" for none.
std::string exception_line(const ExceptionContext& c) {
  std::string text = c.describe();
  auto at = text.find("\nexception: ");
  if (at == std::string::npos) return "";
  auto end = text.find('\n', at + 1);
  return text.substr(at + 12, end == std::string::npos ? std::string::npos : end - at - 12);
}

std::string file_name(const char* path) {
  std::string file = path;
  return file.substr(file.find_last_of('/') + 1);
}

// Starts an echo server and sends one line through it: proof that the loop still serves sockets.
Task<std::string> echo_once(std::string line) {
  auto server = co_await start_server(
      [](StreamReader r, StreamWriter w) -> Task<void> {
        w.write(co_await r.readline());
        co_await w.drain();
        w.close();
      },
      "127.0.0.1", 0);
  auto port = server.sockets().at(0).sockname.port();
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  writer.write(line);
  std::string echoed = co_await reader.readline();
  writer.close();
  server.close();
  co_await server.wait_closed();
  co_return echoed;
}

// Seconds of CPU this thread has used: a loop that spins shows up here, one that waits does not.
Duration thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
}  // namespace

// asyncio's Handle._run: a callback's exception goes to the exception handler with the callback's
// creation site; main's result stands, and the loop goes on serving timers and sockets.
TEST(Loop, ThrowingCallSoonIsReportedAndTheLoopGoesOn) {
  std::vector<ExceptionContext> reports;
  unsigned line = 0;
  auto guard = std::make_shared<int>(0);  // captured by the callback: its node must be freed
  int value = run([&]() -> Task<int> {
    auto& loop = EventLoop::running();
    loop.set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
    line = __LINE__; loop.call_soon([guard] { throw std::runtime_error("boom"); });
    bool timer_fired = false;
    loop.call_later(5ms, [&] { timer_fired = true; });
    co_await sleep(20ms);
    EXPECT_TRUE(timer_fired);
    EXPECT_EQ(co_await echo_once("still serving\n"), "still serving\n");
    co_return 42;
  }());
  EXPECT_EQ(value, 42);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].message, "Exception in callback");
  EXPECT_EQ(exception_line(reports[0]), "std::runtime_error: boom");
  EXPECT_TRUE(reports[0].task.empty());
  ASSERT_TRUE(reports[0].where.has_value());
  EXPECT_EQ(file_name(reports[0].where->file), "test_loop.cpp");
  EXPECT_EQ(reports[0].where->line, line);
  EXPECT_EQ(guard.use_count(), 1);
}

TEST(Loop, ThrowingTimerCallbackIsReportedAndLaterTimersStillFire) {
  std::vector<ExceptionContext> reports;
  Trace trace;
  unsigned line = 0;
  auto guard = std::make_shared<int>(0);
  int value = run([&]() -> Task<int> {
    auto& loop = EventLoop::running();
    loop.set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
    line = __LINE__; loop.call_later(10ms, [guard] { throw std::out_of_range("late boom"); });
    loop.call_at(loop.time() + 20ms, [&] { trace("20ms"); });
    co_await sleep(30ms);
    trace("main");
    co_return 7;
  }(), test::virtual_time());
  EXPECT_EQ(value, 7);
  EXPECT_EQ(trace.str(), "20ms\nmain\n");
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].message, "Exception in callback");
  EXPECT_EQ(exception_line(reports[0]), "std::out_of_range: late boom");
  ASSERT_TRUE(reports[0].where.has_value());
  EXPECT_EQ(reports[0].where->line, line);
  EXPECT_EQ(guard.use_count(), 1);
}

TEST(Loop, ThrowingCallSoonThreadsafeFromAnotherThreadIsReported) {
  std::vector<ExceptionContext> reports;
  unsigned line = 0;
  int value = run([&]() -> Task<int> {
    auto& loop = EventLoop::running();
    loop.set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
    std::atomic<bool> after{false};
    std::thread t([&] {
      line = __LINE__; loop.call_soon_threadsafe([] { throw 17; });
      loop.call_soon_threadsafe([&] { after = true; });
    });
    for (int i = 0; i < 2000 && !after; ++i) co_await sleep(1ms);
    t.join();
    EXPECT_TRUE(after);
    co_return 3;
  }());
  EXPECT_EQ(value, 3);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].message, "Exception in callback");
  EXPECT_EQ(exception_line(reports[0]), "int");
  ASSERT_TRUE(reports[0].where.has_value());
  EXPECT_EQ(reports[0].where->line, line);
}

TEST(Loop, ThrowingDoneCallbackIsReported) {
  std::vector<ExceptionContext> reports;
  Trace trace;
  auto guard = std::make_shared<int>(0);
  int value = run([&]() -> Task<int> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
    auto pending = create_task([]() -> Task<int> {
      co_await sleep(1ms);
      co_return 1;
    }());
    pending.add_done_callback([guard](auto&) { throw std::runtime_error("done boom"); });
    pending.add_done_callback([&](auto& h) { trace("second callback saw " + std::to_string(h.result())); });
    int got = co_await pending;
    co_await sleep(0);  // done callbacks run soon after completion
    auto finished = create_task([]() -> Task<void> { co_return; }());
    co_await finished;
    finished.add_done_callback([](auto&) { throw CancelledError("cancelled in a callback"); });
    co_await sleep(0);
    co_return got + 1;
  }(), test::virtual_time());
  EXPECT_EQ(value, 2);
  EXPECT_EQ(trace.str(), "second callback saw 1\n");
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].message, "Exception in callback");
  EXPECT_EQ(exception_line(reports[0]), "std::runtime_error: done boom");
  EXPECT_EQ(exception_line(reports[1]), "awith::CancelledError: cancelled in a callback");
  EXPECT_EQ(guard.use_count(), 1);
}

// A signal handler that throws something that is not a std::exception is reported too, and the
// next signal still reaches its handler.
TEST(Loop, ThrowingSignalHandlerIsReportedAndKeepsReceiving) {
  std::vector<ExceptionContext> reports;
  int calls = 0;
  run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
    add_signal_handler(SIGUSR2, [&] {
      ++calls;
      throw calls;
    });
    for (int i = 0; i < 2; ++i) {
      ::raise(SIGUSR2);
      for (int spin = 0; spin < 400 && calls == i; ++spin) co_await sleep(5ms);
    }
    EXPECT_TRUE(remove_signal_handler(SIGUSR2));
  }());
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].message, "Exception in the handler of signal " + std::to_string(SIGUSR2));
  EXPECT_EQ(exception_line(reports[1]), "int");
}

// asyncio: an exception handler that raises is reported by the default handler ("Unhandled error
// in exception handler"), together with the report it failed on; the loop carries on.
TEST(Loop, ThrowingExceptionHandlerDoesNotStopTheLoop) {
  int handled = 0;
  testing::internal::CaptureStderr();
  int value = run([&]() -> Task<int> {
    auto& loop = EventLoop::running();
    loop.set_exception_handler([&](const ExceptionContext&) {
      ++handled;
      throw std::logic_error("handler broke");
    });
    loop.call_soon([] { throw std::runtime_error("boom"); });
    co_await sleep(1ms);
    loop.call_soon([] { throw std::runtime_error("boom again"); });
    co_await sleep(1ms);
    co_return 5;
  }(), test::virtual_time());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(value, 5);
  EXPECT_EQ(handled, 2);
  auto first = err.find(
      "awith: Unhandled error in exception handler\nexception: std::logic_error: handler broke\n"
      "awith: Exception in callback\nexception: std::runtime_error: boom\ncallback created at test_loop.cpp:");
  EXPECT_NE(first, std::string::npos) << err;
  EXPECT_NE(err.find("exception: std::runtime_error: boom again\n"), std::string::npos) << err;
}

TEST(Loop, DefaultExceptionHandlerPrintsMessageExceptionTaskAndWhere) {
  EventLoop loop;
  EXPECT_FALSE(loop.get_exception_handler());
  int custom = 0;
  loop.set_exception_handler([&](const ExceptionContext&) { ++custom; });
  EXPECT_TRUE(loop.get_exception_handler());
  loop.call_exception_handler(ExceptionContext("to the custom handler"));
  EXPECT_EQ(custom, 1);
  loop.set_exception_handler(nullptr);
  EXPECT_FALSE(loop.get_exception_handler());

  testing::internal::CaptureStderr();
  loop.call_exception_handler(ExceptionContext("Something failed",
                                               std::make_exception_ptr(std::invalid_argument("bad value")),
                                               "task created at main.cpp:10 in serve",
                                               SourceLocation::current("/src/app/worker.cpp", 42, "tick")));
  loop.call_exception_handler(ExceptionContext("Just a message"));
  EventLoop::default_exception_handler(ExceptionContext("Cancelled", std::make_exception_ptr(CancelledError())));
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "awith: Something failed\n"
            "exception: std::invalid_argument: bad value\n"
            "task created at main.cpp:10 in serve\n"
            "callback created at worker.cpp:42 in tick\n"
            "awith: Just a message\n"
            "awith: Cancelled\n"
            "exception: awith::CancelledError: cancelled\n");
  EXPECT_EQ(custom, 1);
}

// A task exception nobody retrieved: asyncio's message, the exception itself, and the task.
TEST(Loop, NeverRetrievedTaskExceptionCarriesTheExceptionAndTheTask) {
  std::vector<ExceptionContext> reports;
  unsigned line = 0;
  run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c); });
    {
      line = __LINE__; auto t = create_task([]() -> Task<void> { throw std::length_error("lost"); co_return; }());
      co_await sleep(0);
      co_await sleep(0);
    }
  }(), test::virtual_time());
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].message, "Task exception was never retrieved");
  EXPECT_EQ(exception_line(reports[0]), "std::length_error: lost");
  EXPECT_NE(reports[0].task.find("task created at test_loop.cpp:" + std::to_string(line)), std::string::npos)
      << reports[0].task;
  EXPECT_FALSE(reports[0].where.has_value());
}

TEST(Loop, EmptyCallbacksAreRejectedWhereTheyAreScheduled) {
  EventLoop loop;
  void (*null_fn)() = nullptr;
  EXPECT_THROW(loop.call_soon(std::function<void()>{}), std::invalid_argument);
  EXPECT_THROW(loop.call_soon(null_fn), std::invalid_argument);
  EXPECT_THROW(loop.call_later(1ms, std::function<void()>{}), std::invalid_argument);
  EXPECT_THROW(loop.call_at(loop.time(), null_fn), std::invalid_argument);
  EXPECT_THROW(loop.call_soon_threadsafe(std::function<void()>{}), std::invalid_argument);
}

// epoll_wait takes int milliseconds: a deadline more than 24.8 days away must clamp, not wrap
// (2^32 ms used to become 0, a busy spin; 2^31 ms a negative, an endless wait).
TEST(Loop, PollTimeoutClampsFarDeadlinesAndRoundsUp) {
  auto now = Clock::now();
  EXPECT_EQ(detail::poll_timeout_ms(now, now), 0);
  EXPECT_EQ(detail::poll_timeout_ms(now - 1s, now), 0);
  EXPECT_EQ(detail::poll_timeout_ms(now + 1ns, now), 1);
  EXPECT_EQ(detail::poll_timeout_ms(now + 1500us, now), 2);
  EXPECT_EQ(detail::poll_timeout_ms(now + std::chrono::milliseconds(INT_MAX), now), INT_MAX);
  EXPECT_EQ(detail::poll_timeout_ms(now + std::chrono::milliseconds(1LL << 31), now), INT_MAX);
  EXPECT_EQ(detail::poll_timeout_ms(now + std::chrono::milliseconds(1LL << 32), now), INT_MAX);
  EXPECT_EQ(detail::poll_timeout_ms(now + std::chrono::hours(24 * 100), now), INT_MAX);
  EXPECT_EQ(detail::poll_timeout_ms(TimePoint::max(), now), INT_MAX);
}

TEST(Loop, FarSleepIsCancelledPromptlyOnTheRealClock) {
  auto wall = Clock::now();
  bool cancelled = run([]() -> Task<bool> {
    auto& loop = EventLoop::running();
    auto sleeper = create_task([]() -> Task<void> { co_await sleep(std::chrono::hours(24 * 30)); }());
    std::thread canceller([&] {
      std::this_thread::sleep_for(20ms);
      loop.call_soon_threadsafe([&] { sleeper.cancel(); });
    });
    bool got_cancelled = false;
    try {
      co_await sleeper;
    } catch (const CancelledError&) {
      got_cancelled = true;
    }
    canceller.join();
    co_return got_cancelled;
  }());
  EXPECT_TRUE(cancelled);
  EXPECT_LT(Clock::now() - wall, 2s);
}

// A timer 100 days away neither fires nor makes the loop spin while it waits for other work.
TEST(Loop, FarTimerNeitherFiresNorSpins) {
  EventLoop loop;
  bool fired = false;
  auto start = loop.time();
  auto far = loop.call_later(std::chrono::hours(24 * 100), [&] { fired = true; });
  EXPECT_GE(far.when() - start, std::chrono::hours(24 * 100));
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    loop.call_soon_threadsafe([&] { loop.stop(); });
  });
  auto cpu = thread_cpu_time();
  loop.run_forever();
  cpu = thread_cpu_time() - cpu;
  stopper.join();
  EXPECT_FALSE(fired);
  EXPECT_GE(loop.time() - start, 100ms);
  EXPECT_LT(cpu, 50ms);
  far.cancel();
}

TEST(Loop, FarTimersFireAtTheirExactVirtualTimeAndHugeDelaysSaturate) {
  EventLoop loop(test::virtual_time());
  auto start = loop.time();
  TimePoint fired_at{};
  loop.call_later(std::chrono::hours(24 * 100), [&] {
    fired_at = loop.time();
    loop.stop();
  });
  auto never = loop.call_later(Duration::max(), [] {});
  EXPECT_EQ(never.when(), TimePoint::max());
  auto overdue = loop.call_later(Duration::min(), [] {});
  EXPECT_LE(overdue.when(), start);
  loop.run_forever();
  EXPECT_EQ(fired_at - start, std::chrono::hours(24 * 100));
  never.cancel();
}

// Debug and plain loops come and go on several threads at once: the process-wide debug flag is
// race-free (ThreadSanitizer runs this), and a debug finding reaches only a loop in debug mode.
TEST(Loop, DebugAndPlainLoopsOnSeveralThreads) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 50;
  std::atomic<int> wrong{0};
  std::atomic<int> debug_reports{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        LoopOptions o;
        o.debug = (t + round) % 2 == 0;
        int reports = 0;
        bool debug = false;
        run([&]() -> Task<void> {
          auto& loop = EventLoop::running();
          debug = loop.debug();
          loop.set_exception_handler([&](const ExceptionContext& c) {
            if (c.message.find("was never awaited") != std::string::npos) ++reports;
          });
          { auto never = []() -> Task<void> { co_return; }(); }
          co_return;
        }(), o);
        if (reports != (debug ? 1 : 0)) ++wrong;
        if (debug) ++debug_reports;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(debug_reports.load(), 0);
  EXPECT_FALSE(detail::g_debug_enabled.load());
}
