// timeout / timeout_at / wait_for / shield / CancelScope: the to_* asyncio scenarios as traces
// (virtual clock), nested scopes, and the shielded cleanup scope.
#include <gtest/gtest.h>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

TEST(Timeout, To01TimeoutBoundary) {
  Trace trace;
  run([&]() -> Task<void> {
    Timeout* cm = nullptr;
    try {
      co_await async_with(timeout(10ms), [&](Timeout& t) -> Task<void> {
        cm = &t;
        co_await try_finally(
            [&]() -> Task<void> {
              try {
                co_await sleep(10s);
              } catch (const CancelledError&) {
                trace("body saw CancelledError");
                throw;
              }
            },
            [&]() -> Task<void> {
              trace("body finally");
              co_return;
            });
      });
    } catch (const TimeoutError& e) {
      std::string context = "None";
      try {
        std::rethrow_if_nested(e);
      } catch (const CancelledError&) {
        context = "CancelledError";
      }
      trace("caught TimeoutError at boundary; context=" + context);
    }
    trace("cancelling=" + std::to_string(current_task().cancelling()));
    bool expired = true;
    co_await async_with(timeout(10s), [&](Timeout& t) -> Task<void> {
      co_await sleep(0);
      expired = t.expired();
    });
    trace(std::string("no expiry: expired=") + test::py(expired));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "body saw CancelledError\nbody finally\ncaught TimeoutError at boundary; context=CancelledError\n"
            "cancelling=0\nno expiry: expired=False\n");
}

TEST(Timeout, To02RescheduleNoneExpired) {
  Trace trace;
  run([&]() -> Task<void> {
    auto& loop = EventLoop::running();
    co_await async_with(timeout(std::nullopt), [&](Timeout& cm) -> Task<void> {
      trace(std::string("when=") + (cm.when() ? "set" : "None") + " expired=" + test::py(cm.expired()));
      co_await sleep(1ms);
      trace("timeout(None) body completed");
    });
    Timeout* last = nullptr;
    try {
      co_await async_with(timeout(std::nullopt), [&](Timeout& cm) -> Task<void> {
        last = &cm;
        cm.reschedule(loop.time() + 10ms);
        trace(std::string("armed: when is set=") + test::py(cm.when().has_value()));
        co_await sleep(10s);
      });
    } catch (const TimeoutError&) {
      trace("rescheduled timeout fired");
    }
    co_await async_with(timeout(10ms), [&](Timeout& cm) -> Task<void> {
      cm.reschedule(std::nullopt);
      co_await sleep(20ms);
      trace(std::string("disarmed with reschedule(None): survived; expired=") + test::py(cm.expired()));
    });
    try {
      co_await async_with(timeout(20ms), [&](Timeout& cm) -> Task<void> {
        co_await sleep(0);
        cm.reschedule(loop.time() - 1s);
        trace("rescheduled into the past; next await gets cancelled");
        co_await sleep(0);
        trace("not reached");
      });
    } catch (const TimeoutError&) {
      trace("past deadline fired");
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "when=None expired=False\ntimeout(None) body completed\narmed: when is set=True\n"
            "rescheduled timeout fired\ndisarmed with reschedule(None): survived; expired=False\n"
            "rescheduled into the past; next await gets cancelled\npast deadline fired\n");
}

TEST(Timeout, To03NestedInnerFirst) {
  Trace trace;
  run([&]() -> Task<void> {
    bool outer_expired = true;
    co_await async_with(timeout(1s), [&](Timeout& outer) -> Task<void> {
      Timeout* inner_ptr = nullptr;
      try {
        co_await async_with(timeout(10ms), [&](Timeout& inner) -> Task<void> {
          inner_ptr = &inner;
          co_await sleep(10s);
        });
      } catch (const TimeoutError&) {
        trace(std::string("inner TimeoutError; outer.expired=") + test::py(outer.expired()));
      }
      co_await sleep(0);
      trace("outer body continues");
      outer_expired = outer.expired();
    });
    trace(std::string("outer exited normally; outer.expired=") + test::py(outer_expired));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "inner TimeoutError; outer.expired=False\nouter body continues\nouter exited normally; outer.expired=False\n");
}

TEST(Timeout, OuterFirstPassesThroughTheInnerScope) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(timeout(10ms), [&](Timeout&) -> Task<void> {
        try {
          co_await async_with(timeout(1s), [&](Timeout&) -> Task<void> { co_await sleep(10s); });
        } catch (const TimeoutError&) {
          trace("inner converted it (wrong)");
        } catch (const CancelledError&) {
          trace("inner let CancelledError pass");
          throw;
        }
      });
    } catch (const TimeoutError&) {
      trace("outer raised TimeoutError");
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "inner let CancelledError pass\nouter raised TimeoutError\n");
}

TEST(Timeout, ATaskCancelInsideATimeoutIsNotConverted) {
  run([]() -> Task<void> {
    auto t = create_task([]() -> Task<void> {
      co_await async_with(timeout(1s), [](Timeout&) -> Task<void> { co_await sleep(10s); });
    });
    co_await sleep(1ms);
    t.cancel();
    EXPECT_THROW(co_await t, CancelledError);
    EXPECT_TRUE(t.cancelled());
  }(), test::virtual_time());
}

namespace {
struct SlowExit {  // constructed, not aggregate-initialised: see Stage in test_context.cpp
  SlowExit(std::string n, Duration c, Trace& t) : name(std::move(n)), cleanup(c), trace(t) {}
  std::string name;
  Duration cleanup;
  Trace& trace;
  Ready<> aenter() {
    trace(name + " enter");
    return {};
  }
  Task<void> aexit(std::exception_ptr e) {
    trace(name + " exit start exc=" + (e ? "CancelledError" : "None"));
    try {
      co_await sleep(cleanup);
      trace(name + " cleanup completed");
    } catch (const CancelledError&) {
      trace(name + " cleanup interrupted by CancelledError");
      throw;
    }
  }
};
}  // namespace

// to_06: (a) the deadline hits the body: the exit's awaits complete (cleanup is not interrupted by
// the cancellation that unwinds it); (b) the deadline passes while the exit itself awaits: that is
// a new request, the cleanup await is interrupted.
TEST(Timeout, To06ExpiresDuringInnerAexit) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(timeout(10ms), [&](Timeout&) -> Task<void> {
        co_await async_with(SlowExit{"a", 20ms, trace}, [&]() -> Task<void> { co_await sleep(10s); });
      });
    } catch (const TimeoutError&) {
      trace("a: TimeoutError");
    }
    try {
      co_await async_with(timeout(10ms), [&](Timeout&) -> Task<void> {
        co_await async_with(SlowExit{"b", 10s, trace}, [&]() -> Task<void> {
          trace("b body finishes immediately");
          co_return;
        });
      });
    } catch (const TimeoutError&) {
      trace("b: TimeoutError");
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "a enter\na exit start exc=CancelledError\na cleanup completed\na: TimeoutError\n"
            "b enter\nb body finishes immediately\nb exit start exc=None\n"
            "b cleanup interrupted by CancelledError\nb: TimeoutError\n");
}

// to_07: asyncio protects the cleanup with shield() and awaits the task again after the cancel
// was consumed. awith differs (level-triggered): awaiting again would raise again. The awith way
// is the shielded cleanup scope, bounded by its own deadline; the trace is asyncio's.
TEST(Timeout, To07ShieldedCleanupScope) {
  Trace trace;
  run([&]() -> Task<void> {
    struct ShieldedExit {
      Trace& trace;
      Ready<> aenter() {
        trace("enter");
        return {};
      }
      Task<void> aexit(std::exception_ptr) {
        co_await async_with(CancelScope::shielded(1s), [&](CancelScope&) -> Task<void> {
          trace("cleanup started");
          co_await sleep(30ms);  // the outer deadline passes meanwhile: shielded
          trace("cleanup finished");
        });
      }
    };
    try {
      co_await async_with(timeout(10ms), [&](Timeout&) -> Task<void> {
        co_await async_with(ShieldedExit{trace}, [&]() -> Task<void> {
          trace("body finishes immediately");
          co_return;
        });
        trace("not reached: the timeout has expired");
        co_await sleep(0);
      });
    } catch (const TimeoutError&) {
      trace("TimeoutError after shielded cleanup completed");
    }
    // shield(task) itself keeps asyncio's semantics: the awaiter is cancelled, the task goes on.
    auto inner = create_task([]() -> Task<std::string> {
      co_await sleep(30ms);
      co_return "cleanup-result";
    });
    try {
      co_await async_with(timeout(10ms), [&](Timeout&) -> Task<void> { co_await shield(inner); });
    } catch (const TimeoutError&) {
      trace(std::string("shield raised; inner done=") + test::py(inner.done()) + " cancelled=" + test::py(inner.cancelled()));
    }
    trace("awaited later -> " + co_await inner);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "enter\nbody finishes immediately\ncleanup started\ncleanup finished\nnot reached: the timeout has expired\n"
            "TimeoutError after shielded cleanup completed\nshield raised; inner done=False cancelled=False\n"
            "awaited later -> cleanup-result\n");
}

TEST(Timeout, ShieldedCleanupScopeIsBoundedByItsOwnDeadline) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      co_await try_finally([]() -> Task<void> { co_await sleep(10s); },
                           [&]() -> Task<void> {
                             auto start = EventLoop::running().time();
                             bool caught = false;
                             co_await async_with(CancelScope::shielded(100ms), [&](CancelScope& s) -> Task<void> {
                               co_await try_finally([]() -> Task<void> { co_await sleep(10s); },  // a stuck flush
                                                    [&]() -> Task<void> {
                                                      caught = true;
                                                      co_return;
                                                    });
                               (void)s;
                             });
                             auto took = EventLoop::running().time() - start;
                             trace(std::string("gave up after ") +
                                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()) +
                                   " ms; abandoned=" + test::py(caught));
                           });
    });
    co_await sleep(1ms);
    t.cancel();
    co_await sleep(10ms);
    t.cancel();  // a second cancel does not reach into the shielded scope either
    EXPECT_THROW(co_await t, CancelledError);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "gave up after 100 ms; abandoned=True\n");
}

TEST(Timeout, To08WaitFor) {
  Trace trace;
  run([&]() -> Task<void> {
    auto slow = [&](std::string name, bool swallow) -> Task<std::string> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        trace(name + " cancelled by wait_for, cleaning up");
      }
      // asyncio awaits in the except block; awith's cleanup scope is try_finally, but here the
      // cancellation was caught, so the awaits go through a cleanup scope explicitly.
      co_await try_finally([]() -> Task<void> { co_return; }, [&]() -> Task<void> {
        co_await sleep(0);
        trace(name + " cleanup done");
      });
      if (swallow) co_return name + "-late-value";
      throw CancelledError();
    };
    try {
      co_await wait_for(slow("s1", false), 10ms);
    } catch (const TimeoutError& e) {
      std::string cause = "None";
      try {
        std::rethrow_if_nested(e);
      } catch (const CancelledError&) {
        cause = "CancelledError";
      }
      trace("TimeoutError cause=" + cause);
    }
    auto r = co_await wait_for(slow("s2", true), 10ms);
    trace("swallowing inner -> wait_for returned '" + r + "'");
    auto quick = []() -> Task<int> {
      co_await sleep(0);
      co_return 42;
    };
    trace("wait_for(quick, None) -> " + std::to_string(co_await wait_for(quick(), std::nullopt)));
    try {
      co_await wait_for(quick(), 0s);
    } catch (const TimeoutError&) {
      trace("wait_for(quick, 0) -> TimeoutError");
    }
    auto handle = create_task(slow("s3", false));
    try {
      co_await wait_for(handle, 10ms);
    } catch (const TimeoutError&) {
      trace(std::string("wait_for(task) cancelled and awaited it: done=") + test::py(handle.done()));
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "s1 cancelled by wait_for, cleaning up\ns1 cleanup done\nTimeoutError cause=CancelledError\n"
            "s2 cancelled by wait_for, cleaning up\ns2 cleanup done\nswallowing inner -> wait_for returned 's2-late-value'\n"
            "wait_for(quick, None) -> 42\nwait_for(quick, 0) -> TimeoutError\n"
            "s3 cancelled by wait_for, cleaning up\ns3 cleanup done\nwait_for(task) cancelled and awaited it: done=True\n");
}

TEST(Timeout, To09TimeoutAtPastAndSwallow) {
  Trace trace;
  run([&]() -> Task<void> {
    auto& loop = EventLoop::running();
    try {
      co_await async_with(timeout_at(loop.time() - 5s), [&](Timeout&) -> Task<void> {
        trace("body runs (sync part)");
        co_await sleep(0);
        trace("not reached");
      });
    } catch (const TimeoutError&) {
      trace("TimeoutError at first await");
    }
    bool expired = false;
    co_await async_with(timeout(10ms), [&](Timeout& cm) -> Task<void> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        trace("body swallowed the timeout's CancelledError");
      }
      expired = cm.expired();
    });
    trace(std::string("block exited normally; expired=") + test::py(expired) +
          " cancelling=" + std::to_string(current_task().cancelling()));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "body runs (sync part)\nTimeoutError at first await\nbody swallowed the timeout's CancelledError\n"
            "block exited normally; expired=True cancelling=0\n");
}

TEST(CancelScope, ExplicitCancelEndsQuietly) {
  Trace trace;
  run([&]() -> Task<void> {
    bool caught = false;
    co_await async_with(CancelScope(), [&](CancelScope& scope) -> Task<void> {
      auto canceller = create_task([&]() -> Task<void> {
        co_await sleep(5ms);
        scope.cancel();
      });
      co_await sleep(1s);
      trace("not reached");
    });
    co_await async_with(move_on_after(5ms), [&](CancelScope&) -> Task<void> { co_await sleep(1s); });
    trace("moved on");
    CancelScope pre;
    pre.cancel();
    co_await async_with(pre, [&](CancelScope&) -> Task<void> {
      trace("sync part of a pre-cancelled scope runs");
      co_await sleep(0);
      trace("not reached");
    });
    caught = pre.cancelled_caught();
    trace(std::string("caught=") + test::py(caught));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "moved on\nsync part of a pre-cancelled scope runs\ncaught=True\n");
}

// wait_for accepts awaiters built in place that cannot be moved (lock.acquire(), q.get()): it
// borrows them for the expression. On expiry the wait is withdrawn: the lock is not taken, no
// item is consumed; within the bound they complete as a plain await would.
TEST(WaitFor, BorrowsAwaitersBuiltInPlace) {
  Trace trace;
  run([&]() -> Task<void> {
    Lock lock;
    Queue<int> q;
    co_await lock.acquire();
    auto start = EventLoop::running().time();
    try {
      co_await wait_for(lock.acquire(), 1s);
    } catch (const TimeoutError&) {
      trace("lock.acquire() timed out after " + std::to_string((EventLoop::running().time() - start) / 1ms) + "ms");
    }
    lock.release();
    trace("released: locked=" + test::py(lock.locked()) + " (no waiter was left queued)");
    bool got = co_await wait_for(lock.acquire(), 1s);
    trace("then acquired=" + test::py(got) + " locked=" + test::py(lock.locked()));
    lock.release();
    try {
      co_await wait_for(q.get(), 1s);
    } catch (const TimeoutError&) {
      trace("q.get() timed out");
    }
    q.put_nowait(5);
    trace("item kept: qsize=" + std::to_string(q.qsize()));
    trace("q.get() -> " + std::to_string(co_await wait_for(q.get(), 1s)));
    auto putter = create_task([&]() -> Task<void> {
      co_await sleep(100ms);
      q.put_nowait(6);
    });
    trace("q.get() while a put comes -> " + std::to_string(co_await wait_for(q.get(), 1s)));
    co_await putter;
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "lock.acquire() timed out after 1000ms\nreleased: locked=False (no waiter was left queued)\n"
            "then acquired=True locked=True\nq.get() timed out\nitem kept: qsize=1\nq.get() -> 5\n"
            "q.get() while a put comes -> 6\n");
}

// An owned awaitable (a Task, a TaskHandle) gives a Task that can be stored; a borrowed one gives
// a BorrowingTask, which can only be awaited in the expression that made it.
TEST(WaitFor, OwnedResultsCanBeStoredBorrowedOnesAreBorrowingTasks) {
  run([&]() -> Task<void> {
    auto quick = []() -> Task<int> {
      co_await sleep(0);
      co_return 42;
    };
    auto stored = wait_for(quick(), 1s);
    auto handle = create_task(quick());
    auto through_handle = wait_for(handle, 1s);
    co_await sleep(0);
    EXPECT_EQ(co_await std::move(stored), 42);
    EXPECT_EQ(co_await through_handle, 42);
    EXPECT_EQ(co_await handle, 42);  // awaiting a copy of the handle did not move the result out
  }(), test::virtual_time());
  static_assert(std::is_same_v<decltype(wait_for(std::declval<Task<int>>(), 1s)), Task<int>>);
  static_assert(std::is_same_v<decltype(wait_for(std::declval<detail::LockAcquire>(), 1s)), BorrowingTask<bool>>);
}

// current_effective_deadline: the nearest deadline of the enclosing scopes, cut at a shield,
// continued from a task group's children into the scopes around the group, and without the
// deadlines whose cancellation a cleanup scope hides.
TEST(CurrentEffectiveDeadline, NearestEnclosingDeadlineStopsAtShieldsAndCrossesTaskGroups) {
  LoopOptions options;
  options.virtual_clock = true;
  run(
      []() -> Task<void> {
        auto& loop = EventLoop::running();
        const TimePoint start = loop.time();
        EXPECT_FALSE(current_effective_deadline().has_value());
        co_await async_with(timeout(10s), [&]() -> Task<void> {
          EXPECT_EQ(current_effective_deadline(), start + 10s);
          co_await async_with(timeout(20s), [&]() -> Task<void> {
            EXPECT_EQ(current_effective_deadline(), start + 10s);  // the outer one is nearer
            co_return;
          });
          co_await async_with(CancelScope::after(3s), [&]() -> Task<void> {
            EXPECT_EQ(current_effective_deadline(), start + 3s);
            co_return;
          });
          co_await async_with(CancelScope::shielded(30s), [&]() -> Task<void> {
            EXPECT_EQ(current_effective_deadline(), start + 30s);  // the shield cuts the outer 10 s
            co_return;
          });
          co_await async_with(CancelScope(std::nullopt, true), [&]() -> Task<void> {
            EXPECT_FALSE(current_effective_deadline().has_value());
            co_return;
          });
          co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
            tg.create_task([&]() -> Task<void> {
              EXPECT_EQ(current_effective_deadline(), start + 10s);  // the scope around the group
              co_await async_with(TaskGroup(), [&](TaskGroup& inner) -> Task<void> {
                inner.create_task([&]() -> Task<void> {
                  co_await async_with(timeout(15s), [&]() -> Task<void> {
                    EXPECT_EQ(current_effective_deadline(), start + 10s);  // two groups out
                    co_return;
                  });
                });
                co_return;
              });
            });
            co_return;
          });
          // A rescheduled deadline is seen at once.
          co_await async_with(timeout(5s), [&](Timeout& t) -> Task<void> {
            t.reschedule(start + 2s);
            EXPECT_EQ(current_effective_deadline(), start + 2s);
            t.reschedule(std::nullopt);
            EXPECT_EQ(current_effective_deadline(), start + 10s);
            co_return;
          });
        });
        EXPECT_FALSE(current_effective_deadline().has_value());

        // After a deadline fired, the cleanup that runs under it does not see it; a deadline that has
        // not fired still bounds the cleanup.
        co_await async_with(timeout(60s), [&]() -> Task<void> {
          try {
            co_await async_with(CancelScope::after(1s), [&]() -> Task<void> {
              try {
                co_await sleep(10s);
              } catch (const CancelledError&) {
                detail::CleanupScope cleanup;
                EXPECT_EQ(current_effective_deadline(), start + 60s);  // not the 1 s scope's deadline
                throw;
              }
            });
          } catch (const CancelledError&) {
            ADD_FAILURE() << "the scope's own cancellation ends at the scope";
          }
        });
      }(),
      options);
}
