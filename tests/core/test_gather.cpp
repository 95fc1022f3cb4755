// gather / wait / as_completed, with the asyncio scenarios ga_01, ga_03 and ga_04 as traces.
#include <gtest/gtest.h>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", '" : "'") + v[i] + "'";
  return out + "]";
}
}  // namespace

// ga_01: results in argument order; the same task twice runs once; no arguments -> empty.
TEST(Gather, Ga01ResultsInOrder) {
  Trace trace;
  run([&]() -> Task<void> {
    auto job = [&](std::string name, int ticks) -> Task<std::string> {
      for (int i = 0; i < ticks; ++i) co_await sleep(0);
      trace(name + " completed");
      co_return name;
    };
    auto [a, b, c] = co_await gather(job("slow", 3), job("fast", 0), job("mid", 1));
    trace("results=" + join({a, b, c}));
    auto dup = create_task(job("dup", 1));
    auto [d1, d2] = co_await gather(dup, dup);
    trace("dup results=" + join({d1, d2}));
    std::vector<Task<std::string>> none;
    auto empty = co_await gather(none);
    trace("empty=" + join(empty));
  }());
  EXPECT_EQ(trace.str(),
            "fast completed\nmid completed\nslow completed\nresults=['slow', 'fast', 'mid']\n"
            "dup completed\ndup results=['dup', 'dup']\nempty=[]\n");
}

// ga_03: return_exceptions returns exceptions (a CancelledError for a cancelled child) in order.
TEST(Gather, Ga03ReturnExceptions) {
  std::string line;
  run([&]() -> Task<void> {
    auto ok = []() -> Task<std::string> {
      co_await sleep(0);
      co_return "ok";
    };
    auto bad = []() -> Task<std::string> {
      co_await sleep(0);
      throw std::out_of_range("k");
    };
    auto forever = []() -> Task<std::string> {
      co_await sleep(10s);
      co_return "late";
    };
    auto f = create_task(forever());
    auto g = create_task(gather(return_exceptions, ok(), bad(), f));
    co_await sleep(0);
    f.cancel();
    auto [r1, r2, r3] = co_await g;
    auto name = [](auto& o) -> std::string {
      if (o.has_value()) return o.value();
      if (o.cancelled()) return "CancelledError";
      try {
        std::rethrow_exception(o.error());
      } catch (const std::out_of_range&) {
        return "KeyError";
      } catch (...) {
        return "?";
      }
    };
    line = "results=" + join({name(r1), name(r2), name(r3)});
  }(), test::virtual_time());
  EXPECT_EQ(line, "results=['ok', 'KeyError', 'CancelledError']");
}

// ga_04: cancelling gather cancels the children; one cancelled child makes gather raise
// CancelledError while the others go on; cancelling a parent that awaits gather cancels all.
TEST(Gather, Ga04CancelGatherCancelsChildren) {
  Trace trace;
  run([&]() -> Task<void> {
    auto child = [&](std::string name, int ticks = 100) -> Task<std::string> {
      try {
        for (int i = 0; i < ticks; ++i) co_await sleep(0);
        trace(name + " completed");
        co_return name;
      } catch (const CancelledError&) {
        trace(name + " cancelled");
        throw;
      }
    };
    auto g = create_task(gather(child("a"), child("b")));
    co_await sleep(0);
    trace(std::string("gather.cancel() -> ") + (g.cancel() ? "True" : "False"));
    try {
      co_await g;
    } catch (const CancelledError&) {
      trace("await gather -> CancelledError");
    }
    trace("--");
    auto c1 = create_task(child("c1"));
    auto c2 = create_task(child("c2", 3));
    auto g2 = create_task(gather(c1, c2));
    co_await sleep(0);
    c1.cancel();
    try {
      co_await g2;
    } catch (const CancelledError&) {
      trace(std::string("one child cancelled -> gather CancelledError; c2.done=") + (c2.done() ? "True" : "False"));
    }
    co_await c2;
    trace("--");
    auto parent = [&]() -> Task<void> { co_await gather(child("p1"), child("p2")); };
    auto p = create_task(parent());
    co_await sleep(0);
    co_await sleep(0);
    p.cancel();
    co_await gather(return_exceptions, p);
    trace(std::string("parent cancelled=") + (p.cancelled() ? "True" : "False"));
  }());
  EXPECT_EQ(trace.str(),
            "gather.cancel() -> True\na cancelled\nb cancelled\nawait gather -> CancelledError\n--\n"
            "c1 cancelled\none child cancelled -> gather CancelledError; c2.done=False\nc2 completed\n--\n"
            "p1 cancelled\np2 cancelled\nparent cancelled=True\n");
}

TEST(Gather, FirstExceptionPropagatesOthersKeepRunning) {
  Trace trace;
  run([&]() -> Task<void> {
    auto slow = create_task([&]() -> Task<int> {
      co_await sleep(10ms);
      trace("slow finished");
      co_return 1;
    });
    try {
      co_await gather(slow, []() -> Task<void> {
        co_await sleep(1ms);
        throw std::runtime_error("fail");
      }());
    } catch (const std::runtime_error& e) {
      trace(std::string("caught ") + e.what());
    }
    EXPECT_FALSE(slow.done());
    co_await slow;
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "caught fail\nslow finished\n");
}

TEST(Gather, VoidTasksAndVectors) {
  run([]() -> Task<void> {
    auto [v, i] = co_await gather([]() -> Task<void> { co_return; }(), []() -> Task<int> { co_return 4; }());
    static_assert(std::is_same_v<decltype(v), Void>);
    EXPECT_EQ(i, 4);
    std::vector<Task<int>> tasks;
    for (int k = 0; k < 5; ++k) tasks.push_back([](int k) -> Task<int> {
      co_await sleep(std::chrono::milliseconds(5 - k));
      co_return k * k;
    }(k));
    auto squares = co_await gather(tasks);
    EXPECT_EQ(squares, (std::vector<int>{0, 1, 4, 9, 16}));
  }(), test::virtual_time());
}

TEST(Wait, FirstCompletedFirstExceptionAllCompletedAndTimeout) {
  run([]() -> Task<void> {
    auto mk = [](int ms, bool fail) -> Task<int> {
      co_await sleep(std::chrono::milliseconds(ms));
      if (fail) throw std::runtime_error("f");
      co_return ms;
    };
    std::vector<TaskHandle<int>> ts{create_task(mk(30, false)), create_task(mk(10, false)), create_task(mk(20, true))};
    auto r1 = co_await wait(ts, FIRST_COMPLETED);
    EXPECT_EQ(r1.done.size(), 1u);
    EXPECT_EQ(r1.done[0].result(), 10);
    auto r2 = co_await wait(ts, FIRST_EXCEPTION);
    EXPECT_EQ(r2.done.size(), 2u);
    EXPECT_EQ(r2.pending.size(), 1u);
    auto r3 = co_await wait(ts, ALL_COMPLETED, 1ms);
    EXPECT_EQ(r3.pending.size(), 1u);
    auto r4 = co_await wait(ts);
    EXPECT_EQ(r4.done.size(), 3u);
    EXPECT_TRUE(ts[2].exception());
  }(), test::virtual_time());
}

TEST(AsCompleted, YieldsInCompletionOrder) {
  std::vector<int> order;
  run([&]() -> Task<void> {
    std::vector<TaskHandle<int>> ts;
    for (int ms : {30, 10, 20}) ts.push_back(create_task([](int ms) -> Task<int> {
      co_await sleep(std::chrono::milliseconds(ms));
      co_return ms;
    }(ms)));
    auto ac = as_completed(ts);
    while (!ac.empty()) order.push_back((co_await ac.next()).result());
  }(), test::virtual_time());
  EXPECT_EQ(order, (std::vector<int>{10, 20, 30}));
}

// An awaiter built in place (ev.wait()) cannot be moved into a task: gather borrows it for the
// caller's expression, a child task awaits it where it is, and results come in argument order.
TEST(Gather, BorrowsAnAwaiterBuiltInPlace) {
  Trace trace;
  run([&]() -> Task<void> {
    Event ev;
    auto other_task = [&]() -> Task<std::string> {
      co_await sleep(1ms);
      trace("other_task sets the event");
      ev.set();
      co_return "other";
    };
    auto [woke, other] = co_await gather(ev.wait(), other_task());
    trace("results=(" + test::py(woke) + ", '" + other + "')");
    auto [a, b] = co_await gather(return_exceptions, ev.wait(), []() -> Task<int> {
      throw std::out_of_range("k");
      co_return 0;
    }());
    trace("outcomes: " + test::py(a.value()) + ", error=" + test::exception_name(b.error()));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "other_task sets the event\nresults=(True, 'other')\noutcomes: True, error=KeyError\n");
}

// When gather raises while a borrowed child still waits, that child is cancelled and awaited
// before gather returns (its awaiter dies with the expression): the getter leaves the queue, so
// an item put afterwards stays there. An owned child keeps running, as in asyncio.
TEST(Gather, BorrowedChildStillRunningWhenGatherRaisesIsCancelledFirst) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<int> q;
    auto owned = create_task([&]() -> Task<void> {
      co_await sleep(5ms);
      trace("owned child finished");
    });
    try {
      co_await gather(q.get(), owned, []() -> Task<void> {
        co_await sleep(1ms);
        throw std::invalid_argument("fail");
      }());
    } catch (const std::invalid_argument&) {
      trace("gather raised ValueError; owned done=" + test::py(owned.done()));
    }
    q.put_nowait(42);
    co_await sleep(0);
    trace("queue size after put=" + std::to_string(q.qsize()));
    co_await owned;
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "gather raised ValueError; owned done=False\nqueue size after put=1\nowned child finished\n");
}

// asyncio: a task that awaits gather with a cancellation pending cancels every child and waits
// for them, then raises CancelledError. awith does the same at an await that sees the cancel.
TEST(Gather, AwaitedWithACancellationPendingCancelsAndAwaitsEveryChild) {
  Trace trace;
  run([&]() -> Task<void> {
    auto child = [&](std::string name) -> Task<void> {
      try {
        co_await sleep(1h);
      } catch (const CancelledError&) {
        trace(name + " cancelled");
        throw;
      }
    };
    auto a = create_task(child("a"));
    auto b = create_task(child("b"));
    co_await sleep(0);
    auto parent = create_task([&]() -> Task<void> {
      current_task().cancel();
      try {
        co_await gather(a, b);
      } catch (const CancelledError&) {
        trace("gather raised CancelledError; children done=" + test::py(a.done() && b.done()));
        throw;
      }
    });
    co_await gather(return_exceptions, parent);
    trace("parent cancelled=" + test::py(parent.cancelled()));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "a cancelled\nb cancelled\ngather raised CancelledError; children done=True\nparent cancelled=True\n");
}

// create_task accepts any awaitable. One that can be moved or copied is owned by the task; one
// built in place that cannot (q.get()) is given as a factory that builds it inside the task.
TEST(CreateTask, AwaitablesAndFactoriesOfAwaitables) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<int> q;
    auto getter = create_task([&] { return q.get(); });
    auto ready = create_task(Ready<int>{5});
    auto handle_awaiter = create_task(ready);
    co_await sleep(0);
    trace("getter done before put=" + test::py(getter.done()));
    q.put_nowait(7);
    trace("got " + std::to_string(co_await getter) + ", ready " + std::to_string(co_await ready) +
          ", through the handle " + std::to_string(co_await handle_awaiter));
    co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
      auto in_group = tg.create_task([&] { return q.get(); });
      q.put_nowait(8);
      trace("group child got " + std::to_string(co_await in_group));
    });
  }());
  EXPECT_EQ(trace.str(), "getter done before put=False\ngot 7, ready 5, through the handle 5\ngroup child got 8\n");
}
