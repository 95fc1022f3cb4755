// Condition (sync_06/07/08 scenarios, asyncio 3.13 semantics) and Barrier.
#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

// sync_06: wait() needs the lock; notify(n) wakes n waiters FIFO, and they resume holding the
// lock only after the notifier released it; notify_all() wakes the rest.
TEST(Condition, Sync06Notify) {
  Trace trace;
  run([&]() -> Task<void> {
    Condition cond;
    try {
      cond.notify();
    } catch (const RuntimeError& e) {
      trace(std::string("notify without lock -> RuntimeError: ") + e.what());
    }
    try {
      co_await cond.wait();
    } catch (const RuntimeError& e) {
      trace(std::string("wait without lock -> RuntimeError: ") + e.what());
    }
    auto waiter = [&](std::string name) -> Task<void> {
      co_await async_with(cond, [&](Condition& c) -> Task<void> {
        trace(name + " waiting");
        co_await c.wait();
        trace(name + " woke (holds lock=" + test::py(c.locked()) + ")");
      });
    };
    std::vector<TaskHandle<void>> tasks;
    for (int i = 0; i < 5; ++i) tasks.push_back(create_task(waiter(std::string("w") + std::to_string(i))));
    for (int i = 0; i < 3; ++i) co_await sleep(0);
    co_await async_with(cond, [&]() -> Task<void> {
      trace("main notify(2)");
      cond.notify(2);
      trace("main still holds lock; waiters cannot run yet");
      co_await sleep(0);
    });
    for (int i = 0; i < 3; ++i) co_await sleep(0);
    co_await async_with(cond, [&]() -> Task<void> {
      trace("main notify_all()");
      cond.notify_all();
      co_return;
    });
    co_await gather(tasks);
    co_await async_with(cond, [&]() -> Task<void> {
      cond.notify(5);
      trace("notify with no waiters is a no-op");
      co_return;
    });
  }());
  EXPECT_EQ(trace.str(),
            "notify without lock -> RuntimeError: cannot notify on un-acquired lock\n"
            "wait without lock -> RuntimeError: cannot wait on un-acquired lock\n"
            "w0 waiting\nw1 waiting\nw2 waiting\nw3 waiting\nw4 waiting\nmain notify(2)\n"
            "main still holds lock; waiters cannot run yet\nw0 woke (holds lock=True)\n"
            "w1 woke (holds lock=True)\nmain notify_all()\nw2 woke (holds lock=True)\n"
            "w3 woke (holds lock=True)\nw4 woke (holds lock=True)\nnotify with no waiters is a no-op\n");
}

// sync_07: wait_for checks the predicate first and returns its (truthy) value.
TEST(Condition, Sync07WaitFor) {
  Trace trace;
  run([&]() -> Task<void> {
    Condition cond;
    int n = 0;
    co_await async_with(cond, [&]() -> Task<void> {
      bool r = co_await cond.wait_for([] { return true; });
      trace("already-true predicate returns immediately -> " + test::py(r));
    });
    auto consumer = create_task([&]() -> Task<void> {
      co_await async_with(cond, [&]() -> Task<void> {
        auto r = co_await cond.wait_for([&]() -> std::optional<std::string> {
          if (n >= 3) return "n=" + std::to_string(n);
          return std::nullopt;
        });
        trace("consumer predicate satisfied -> '" + *r + "'");
      });
    });
    co_await sleep(0);
    for (int i = 0; i < 3; ++i) {
      co_await async_with(cond, [&]() -> Task<void> {
        ++n;
        trace("producer n=" + std::to_string(n) + " notify");
        cond.notify();
        co_return;
      });
      co_await sleep(0);
    }
    co_await consumer;
  }());
  EXPECT_EQ(trace.str(),
            "already-true predicate returns immediately -> True\nproducer n=1 notify\n"
            "producer n=2 notify\nproducer n=3 notify\nconsumer predicate satisfied -> 'n=3'\n");
}

// sync_08 with asyncio 3.13's semantics (the target; the .expected file was made with 3.11):
// a cancelled wait() re-acquires the lock before raising; a waiter notified and then cancelled
// passes its notification on, so C is woken by the notify(1) that chose B (3.11 lost it and
// printed "C woken by that notify? False"). Unlike 3.13, a waiter cancelled before any notify
// does not wake another one spuriously: awith knows it was not notified.
TEST(Condition, Sync08CancelReacquiresAndPassesTheWakeUpOn) {
  Trace trace;
  run([&]() -> Task<void> {
    Condition cond;
    auto waiter = [&](std::string name) -> Task<void> {
      co_await async_with(cond, [&]() -> Task<void> {
        trace(name + " waiting");
        try {
          co_await cond.wait();
          trace(name + " woke");
        } catch (const CancelledError&) {
          trace(name + " cancelled; holds lock=" + test::py(cond.locked()));
          throw;
        }
      });
    };
    auto a = create_task(waiter("A"));
    auto b = create_task(waiter("B"));
    co_await sleep(0);
    co_await async_with(cond, [&]() -> Task<void> {
      a.cancel();
      trace("main: cancelled A while main holds the lock");
      co_return;
    });
    co_await gather(return_exceptions, a);
    trace("after A: locked=" + test::py(cond.locked()));
    auto c = create_task(waiter("C"));
    co_await sleep(0);
    co_await async_with(cond, [&]() -> Task<void> {
      cond.notify(1);
      b.cancel();
      trace("main: notify(1) then cancel B");
      co_return;
    });
    co_await gather(return_exceptions, b);
    for (int i = 0; i < 5; ++i) co_await sleep(0);
    trace("C woken by that notify? " + test::py(c.done()));
    co_await async_with(cond, [&]() -> Task<void> {
      cond.notify(1);
      co_return;
    });
    co_await c;
    trace("end locked=" + test::py(cond.locked()));
  }());
  EXPECT_EQ(trace.str(),
            "A waiting\nB waiting\nmain: cancelled A while main holds the lock\n"
            "A cancelled; holds lock=True\nafter A: locked=False\nC waiting\n"
            "main: notify(1) then cancel B\nB cancelled; holds lock=True\nC woke\n"
            "C woken by that notify? True\nend locked=False\n");
}

// Cancelled after it was handed the lock back (notified, lock released) but before it ran: it
// still raises CancelledError holding the lock, and its notification goes to the next waiter.
TEST(Condition, WokenThenCancelledPassesTheNotificationOn) {
  Trace trace;
  run([&]() -> Task<void> {
    Condition cond;
    auto waiter = [&](std::string name) -> Task<void> {
      co_await async_with(cond, [&]() -> Task<void> {
        try {
          co_await cond.wait();
          trace(name + " woke");
        } catch (const CancelledError&) {
          trace(name + " cancelled; holds lock=" + test::py(cond.locked()));
          throw;
        }
      });
    };
    auto b = create_task(waiter("B"));
    auto c = create_task(waiter("C"));
    co_await sleep(0);
    co_await cond.acquire();
    cond.notify(1);
    cond.release();  // hands the lock to B, which has not run yet
    b.cancel();
    co_await gather(return_exceptions, b, c);
    EXPECT_TRUE(b.cancelled());
    EXPECT_TRUE(c.done() && !c.cancelled());
    EXPECT_FALSE(cond.locked());
  }());
  EXPECT_EQ(trace.str(), "B cancelled; holds lock=True\nC woke\n");
}

// A condition over a given lock: holding the lock is what wait()/notify() check.
TEST(Condition, SharesAGivenLock) {
  run([]() -> Task<void> {
    Lock lock;
    Condition cond(lock);
    bool ready = false;
    auto t = create_task([&]() -> Task<void> {
      co_await lock.acquire();
      co_await cond.wait_for([&] { return ready; });
      EXPECT_TRUE(lock.locked());
      lock.release();
    });
    co_await sleep(0);
    EXPECT_FALSE(lock.locked());  // wait() released it
    co_await lock.acquire();
    ready = true;
    cond.notify_all();
    lock.release();
    co_await t;
    EXPECT_FALSE(cond.locked());
  }());
}

// A task that is already cancelled does not wait and does not give the lock up.
TEST(Condition, WaitInACancelledTaskRaisesKeepingTheLock) {
  run([]() -> Task<void> {
    Condition cond;
    auto t = create_task([&]() -> Task<void> {
      co_await cond.acquire();
      current_task().cancel();
      try {
        co_await cond.wait();
      } catch (const CancelledError&) {
        EXPECT_TRUE(cond.locked());
        cond.release();
        throw;
      }
    });
    EXPECT_THROW(co_await t, CancelledError);
    EXPECT_FALSE(cond.locked());
  }());
}

TEST(Barrier, ReleasesAllPartiesWithTheirArrivalIndex) {
  Trace trace;
  run([&]() -> Task<void> {
    Barrier barrier(3);
    auto party = [&](std::string name) -> Task<void> {
      std::size_t i = co_await barrier.wait();
      trace(name + " passed index=" + std::to_string(i));
    };
    for (int round = 0; round < 2; ++round) {
      auto a = create_task(party("a"));
      auto b = create_task(party("b"));
      co_await sleep(0);
      EXPECT_EQ(barrier.n_waiting(), 2u);
      auto c = create_task(party("c"));
      co_await gather(a, b, c);
      EXPECT_EQ(barrier.n_waiting(), 0u);
    }
    Barrier single(1);
    co_await async_with(single, [&](std::size_t& i) -> Task<void> {
      trace("async_with single-party barrier index=" + std::to_string(i));
      co_return;
    });
  }());
  EXPECT_EQ(trace.str(),
            "c passed index=2\na passed index=0\nb passed index=1\n"
            "c passed index=2\na passed index=0\nb passed index=1\n"
            "async_with single-party barrier index=0\n");
}

// Arrivals while the released parties are still leaving wait for the next round (asyncio's
// draining state) instead of joining the round that just passed.
TEST(Barrier, ArrivalsWhileDrainingWaitForTheNextRound) {
  Trace trace;
  run([&]() -> Task<void> {
    Barrier barrier(2);
    auto party = [&](std::string name) -> Task<void> {
      std::size_t i = co_await barrier.wait();
      trace(name + " passed index=" + std::to_string(i));
    };
    auto a = create_task(party("a"));
    co_await sleep(0);
    auto b = create_task(party("b"));  // trips; a is released but has not run yet
    auto c = create_task(party("c"));  // arrives while a is still leaving: next round
    co_await sleep(0);
    EXPECT_FALSE(c.done());
    auto d = create_task(party("d"));
    co_await gather(a, b, c, d);
  }());
  EXPECT_EQ(trace.str(), "b passed index=1\na passed index=0\nd passed index=1\nc passed index=0\n");
}

TEST(Barrier, AbortBreaksWaitersAndLaterArrivals) {
  Trace trace;
  run([&]() -> Task<void> {
    Barrier barrier(3);
    auto party = [&](std::string name) -> Task<void> {
      try {
        co_await barrier.wait();
        trace(name + " passed");
      } catch (const BrokenBarrierError& e) {
        trace(name + " BrokenBarrierError: " + e.what());
      }
    };
    auto a = create_task(party("a"));
    co_await sleep(0);
    barrier.abort();
    EXPECT_TRUE(barrier.broken());
    co_await a;
    co_await party("late");
  }());
  EXPECT_EQ(trace.str(),
            "a BrokenBarrierError: Abort or reset of barrier\nlate BrokenBarrierError: Barrier aborted\n");
}

TEST(Barrier, ResetBreaksTheCurrentRoundAndStaysUsable) {
  Trace trace;
  run([&]() -> Task<void> {
    Barrier barrier(2);
    auto party = [&](std::string name) -> Task<void> {
      try {
        std::size_t i = co_await barrier.wait();
        trace(name + " passed index=" + std::to_string(i));
      } catch (const BrokenBarrierError& e) {
        trace(name + " BrokenBarrierError: " + e.what());
      }
    };
    auto a = create_task(party("a"));
    co_await sleep(0);
    barrier.reset();
    auto b = create_task(party("b"));
    co_await a;
    EXPECT_FALSE(barrier.broken());
    co_await party("c");
    co_await b;
  }());
  EXPECT_EQ(trace.str(),
            "a BrokenBarrierError: Abort or reset of barrier\nc passed index=1\nb passed index=0\n");
}

// A party cancelled while waiting no longer counts: the round still needs `parties` others.
TEST(Barrier, CancelledPartyLeavesTheCount) {
  run([]() -> Task<void> {
    Barrier barrier(2);
    auto a = create_task([&]() -> Task<void> { co_await barrier.wait(); });
    co_await sleep(0);
    EXPECT_EQ(barrier.n_waiting(), 1u);
    a.cancel();
    EXPECT_THROW(co_await a, CancelledError);
    EXPECT_EQ(barrier.n_waiting(), 0u);
    auto b = create_task([&]() -> Task<std::size_t> { co_return co_await barrier.wait(); });
    co_await sleep(0);
    EXPECT_FALSE(b.done());
    EXPECT_EQ(co_await barrier.wait(), 1u);
    EXPECT_EQ(co_await b, 0u);
  }());
}

// Cancelled after the barrier released it but before it ran: its wait returns the index (the
// wake-up came first), the CancelledError comes at its next await, and it leaves the count.
TEST(Barrier, WokenThenCancelledPassesAndLeaves) {
  Trace trace;
  run([&]() -> Task<void> {
    Barrier barrier(2);
    auto a = create_task([&]() -> Task<void> {
      std::size_t i = co_await barrier.wait();
      trace("a passed index=" + std::to_string(i));
      co_await sleep(0);
      trace("a not cancelled");
    });
    co_await sleep(0);
    EXPECT_EQ(co_await barrier.wait(), 1u);  // trips and releases a
    a.cancel();
    EXPECT_THROW(co_await a, CancelledError);
    auto b = create_task([&]() -> Task<std::size_t> { co_return co_await barrier.wait(); });
    co_await sleep(0);
    EXPECT_EQ(barrier.n_waiting(), 1u);
    EXPECT_EQ(co_await barrier.wait(), 1u);
    EXPECT_EQ(co_await b, 0u);
  }());
  EXPECT_EQ(trace.str(), "a passed index=0\n");
}

TEST(Barrier, ZeroPartiesIsAValueError) { EXPECT_THROW(Barrier(0), std::invalid_argument); }
