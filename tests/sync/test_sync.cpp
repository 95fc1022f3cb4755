// Lock, Semaphore, BoundedSemaphore and Event: the sync_01/03/04/09 asyncio scenarios as traces,
// FIFO hand-off, the error cases, and cancellation at both sides of a wake-up (a waiter cancelled
// while queued, and one cancelled after it was handed the permit but before it resumed).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {

// Decrements a counter when the holder's body ends, however it ends.
struct Leave {
  int& n;
  ~Leave() { --n; }
};
}  // namespace

// sync_01: FIFO ownership; async_with releases when the body throws; release() when unlocked.
TEST(Lock, Sync01FifoAndReleaseOnException) {
  Trace trace;
  run([&]() -> Task<void> {
    Lock lock;
    auto user = [&](std::string name, bool fail) -> Task<void> {
      co_await async_with(lock, [&](Lock&) -> Task<void> {
        trace(name + " acquired");
        co_await sleep(0);
        if (fail) {
          trace(name + " raising inside lock");
          throw std::invalid_argument(name);
        }
        trace(name + " releasing");
      });
    };
    co_await lock.acquire();
    std::vector<TaskHandle<void>> tasks;
    for (std::string name : {"w1", "w2", "w3", "w4"}) {
      tasks.push_back(create_task(user(name, name == "w2")));
      co_await sleep(0);
    }
    trace("main releases; locked=" + test::py(lock.locked()));
    lock.release();
    auto results = co_await gather(return_exceptions, tasks);
    std::string line = "results=[";
    for (std::size_t i = 0; i < results.size(); ++i) line += (i ? ", " : "") + test::exception_name(results[i].error());
    trace(line + "]");
    trace("locked after all=" + test::py(lock.locked()));
    try {
      lock.release();
    } catch (const RuntimeError& e) {
      trace(std::string("release unlocked -> RuntimeError: ") + e.what());
    }
  }());
  EXPECT_EQ(trace.str(),
            "main releases; locked=True\nw1 acquired\nw1 releasing\nw2 acquired\nw2 raising inside lock\n"
            "w3 acquired\nw3 releasing\nw4 acquired\nw4 releasing\n"
            "results=[None, ValueError, None, None]\nlocked after all=False\n"
            "release unlocked -> RuntimeError: Lock is not acquired.\n");
}

TEST(Lock, UncontendedAcquireDoesNotSuspend) {
  run([]() -> Task<void> {
    Lock lock;
    auto other = create_task([]() -> Task<void> { co_return; });
    EXPECT_TRUE(co_await lock.acquire());
    EXPECT_TRUE(lock.locked());
    EXPECT_FALSE(other.done());  // no suspension happened, so the other task has not run
    lock.release();
    EXPECT_FALSE(lock.locked());
    co_await other;
  }());
}

// A waiter cancelled while queued leaves the queue; the lock goes to the next one.
TEST(Lock, CancelledWhileWaitingPassesTheLockOn) {
  Trace trace;
  run([&]() -> Task<void> {
    Lock lock;
    co_await lock.acquire();
    auto waiter = [&](std::string name) -> Task<void> {
      try {
        co_await lock.acquire();
      } catch (const CancelledError&) {
        trace(name + " cancelled while waiting");
        throw;
      }
      trace(name + " acquired");
      lock.release();
    };
    auto a = create_task(waiter("a"));
    auto b = create_task(waiter("b"));
    co_await sleep(0);
    a.cancel();
    co_await sleep(0);
    lock.release();
    co_await b;
    EXPECT_TRUE(a.cancelled());
    EXPECT_FALSE(lock.locked());
  }());
  EXPECT_EQ(trace.str(), "a cancelled while waiting\nb acquired\n");
}

// Cancelled after release() handed it the lock but before it ran: it holds the lock (the wake-up
// came first), the CancelledError comes at its next await, and async_with's exit releases the
// lock to the next waiter. asyncio instead raises at the acquire and wakes the next waiter.
TEST(Lock, WokenThenCancelledKeepsTheLockAndReleasesOnExit) {
  Trace trace;
  run([&]() -> Task<void> {
    Lock lock;
    co_await lock.acquire();
    auto user = [&](std::string name) -> Task<void> {
      try {
        co_await async_with(lock, [&]() -> Task<void> {
          trace(name + " holds the lock");
          co_await sleep(0);
          trace(name + " done");
        });
      } catch (const CancelledError&) {
        trace(name + " cancelled at its next await; locked=" + test::py(lock.locked()));
        throw;
      }
    };
    auto a = create_task(user("a"));
    auto b = create_task(user("b"));
    co_await sleep(0);
    lock.release();
    a.cancel();
    co_await gather(return_exceptions, a, b);
    EXPECT_TRUE(a.cancelled());
    EXPECT_FALSE(lock.locked());
  }());
  EXPECT_EQ(trace.str(),
            "a holds the lock\na cancelled at its next await; locked=True\nb holds the lock\nb done\n");
}

// A task already cancelled does not queue at a held lock (a cancelled task starts no new wait) and
// leaves no trace in it.
TEST(Lock, AcquireInACancelledTaskRaisesWithoutQueueing) {
  run([]() -> Task<void> {
    Lock lock;
    co_await lock.acquire();
    auto t = create_task([&]() -> Task<void> {
      current_task().cancel();
      co_await lock.acquire();
    });
    EXPECT_THROW(co_await t, CancelledError);
    lock.release();
    EXPECT_FALSE(lock.locked());
  }());
}

// sync_03. Phase 1 is the scenario's trace. Phase 2 is where awith differs on purpose: A was
// handed the permit by release() before cancel() reached it, so it keeps the permit and the
// CancelledError is raised at its next await (level-triggered); its exit then passes the permit
// to B. (asyncio cancels A before it holds anything.) The next await there is an Event that is
// not set yet, so that A has one to reach.
TEST(Semaphore, Sync03FifoAndCancellation) {
  Trace trace;
  run([&]() -> Task<void> {
    int inside = 0;
    auto user = [&](Semaphore& sem, std::string name, Event& hold) -> Task<void> {
      try {
        co_await async_with(sem, [&]() -> Task<void> {
          ++inside;
          trace(name + " in (holders=" + std::to_string(inside) + ")");
          Leave leave{inside};
          co_await hold.wait();
          trace(name + " out");
        });
      } catch (const CancelledError&) {
        trace(name + " cancelled while waiting");
        throw;
      }
    };
    Semaphore sem(2);
    Event hold;
    std::vector<TaskHandle<void>> tasks;
    for (std::string n : {"t1", "t2", "t3", "t4", "t5"}) {
      tasks.push_back(create_task(user(sem, n, hold)));
      co_await sleep(0);
    }
    trace("locked=" + test::py(sem.locked()));
    tasks[2].cancel();
    co_await sleep(0);
    hold.set();
    co_await gather(return_exceptions, tasks);
    trace("phase1 locked=" + test::py(sem.locked()));

    Semaphore sem2(1);
    co_await sem2.acquire();
    Event hold2;
    auto a = create_task(user(sem2, "A", hold2));
    co_await sleep(0);
    auto b = create_task(user(sem2, "B", hold2));
    co_await sleep(0);
    trace("main releases then immediately cancels A");
    sem2.release();
    a.cancel();
    co_await gather(return_exceptions, a);
    hold2.set();
    co_await b;
    trace("phase2 locked=" + test::py(sem2.locked()) + " a.cancelled=" + test::py(a.cancelled()));
    co_await sem2.acquire();
    trace("after one acquire locked=" + test::py(sem2.locked()));
  }());
  EXPECT_EQ(trace.str(),
            "t1 in (holders=1)\nt2 in (holders=2)\nlocked=True\nt3 cancelled while waiting\n"
            "t1 out\nt2 out\nt4 in (holders=1)\nt4 out\nt5 in (holders=1)\nt5 out\nphase1 locked=False\n"
            "main releases then immediately cancels A\nA in (holders=1)\nA cancelled while waiting\n"
            "B in (holders=1)\nB out\nphase2 locked=False a.cancelled=True\nafter one acquire locked=True\n");
}

// A woken-then-cancelled acquirer holds its permit after acquire() returns: value() shows it.
TEST(Semaphore, WokenThenCancelledAcquireCompletesWithThePermit) {
  run([]() -> Task<void> {
    Semaphore sem(0);
    bool acquired = false;
    auto t = create_task([&]() -> Task<void> {
      co_await sem.acquire();
      acquired = true;
      co_await sleep(0);  // the cancellation is raised here
    });
    co_await sleep(0);
    sem.release();
    t.cancel();
    EXPECT_EQ(sem.value(), 0);  // handed over, not added back
    EXPECT_THROW(co_await t, CancelledError);
    EXPECT_TRUE(acquired);
    EXPECT_EQ(sem.value(), 0);  // the task ended holding the permit: it never released it
  }());
}

// Cancellations landing anywhere (queued, right after a hand-off, while holding) never lose or
// duplicate a permit: never more than 3 holders, and all 3 permits are back at the end. Each task
// cancels a random peer right after its release, often the waiter it just handed the permit to.
TEST(Semaphore, RandomCancellationsNeverLoseOrDuplicateAPermit) {
  run([]() -> Task<void> {
    Semaphore sem(3);
    int holders = 0, max_holders = 0;
    std::mt19937 rng(20261125);
    std::vector<TaskHandle<void>> tasks;
    for (int i = 0; i < 20; ++i) {
      tasks.push_back(create_task([&]() -> Task<void> {
        for (int n = 0; n < 10; ++n) {
          co_await async_with(sem, [&]() -> Task<void> {
            max_holders = std::max(max_holders, ++holders);
            Leave leave{holders};
            for (unsigned t = rng() % 3; t > 0; --t) co_await sleep(0);
          });
          if (rng() % 2 == 0) tasks[rng() % tasks.size()].cancel();
        }
      }));
    }
    co_await gather(return_exceptions, tasks);
    EXPECT_EQ(max_holders, 3);
    EXPECT_EQ(holders, 0);
    EXPECT_EQ(sem.value(), 3);
  }());
}

// sync_04: BoundedSemaphore over-release is a ValueError (std::invalid_argument); a plain
// Semaphore allows it; a negative initial value is a ValueError.
TEST(Semaphore, Sync04BoundedSemaphore) {
  Trace trace;
  run([&]() -> Task<void> {
    BoundedSemaphore bs(1);
    co_await async_with(bs, [&](BoundedSemaphore& s) -> Task<void> {
      trace("inside locked=" + test::py(s.locked()));
      co_return;
    });
    try {
      bs.release();
    } catch (const std::invalid_argument& e) {
      trace(std::string("BoundedSemaphore over-release -> ValueError: ") + e.what());
    }
    Semaphore s(1);
    s.release();
    trace("Semaphore over-release allowed, value=" + std::to_string(s.value()));
    try {
      Semaphore bad(-1);
    } catch (const std::invalid_argument& e) {
      trace(std::string("Semaphore(-1) -> ValueError: ") + e.what());
    }
  }());
  EXPECT_EQ(trace.str(),
            "inside locked=True\n"
            "BoundedSemaphore over-release -> ValueError: BoundedSemaphore released too many times\n"
            "Semaphore over-release allowed, value=2\n"
            "Semaphore(-1) -> ValueError: Semaphore initial value must be >= 0\n");
}

// The asyncio Semaphore example (examples/semaphore.cpp) on the virtual clock: 50 tasks behind
// Semaphore(10), each holding it for 0.1 s, take exactly 5 rounds of loop time, and never more
// than 10 hold it at once.
TEST(Semaphore, Example1FiftyTasksTenAtATime) {
  run([]() -> Task<void> {
    Semaphore sem(10);
    int holders = 0, max_holders = 0, count = 0;
    auto worker = [&]() -> Task<void> {
      co_await async_with(sem, [&]() -> Task<void> {
        max_holders = std::max(max_holders, ++holders);
        co_await sleep(0.1);
        --holders;
        ++count;
      });
    };
    std::vector<Task<void>> tasks;
    for (int i = 0; i < 50; ++i) tasks.push_back(worker());
    auto start = EventLoop::running().time();
    co_await gather(tasks);
    EXPECT_EQ(EventLoop::running().time() - start, 500ms);
    EXPECT_EQ(count, 50);
    EXPECT_EQ(max_holders, 10);
    EXPECT_EQ(sem.value(), 10);
  }(), test::virtual_time());
}

// sync_09: set() wakes every waiter, later waits complete at once, clear() re-arms, and set()
// then clear() still wakes the tasks that were waiting.
TEST(Event, Sync09SetClearWait) {
  Trace trace;
  run([&]() -> Task<void> {
    Event ev;
    auto waiter = [&](std::string name) -> Task<void> {
      bool r = co_await ev.wait();
      trace(name + " woke r=" + test::py(r));
    };
    std::vector<TaskHandle<void>> ts;
    for (int i = 0; i < 3; ++i) ts.push_back(create_task(waiter(std::string("w") + std::to_string(i))));
    co_await sleep(0);
    trace("is_set=" + test::py(ev.is_set()) + "; set()");
    ev.set();
    co_await gather(ts);
    trace("wait when already set -> " + test::py(co_await ev.wait()));
    ev.clear();
    auto t = create_task(waiter("late"));
    co_await sleep(0);
    trace("after clear, late still waiting: done=" + test::py(t.done()));
    ev.set();
    ev.clear();
    trace("set() then clear() immediately");
    co_await sleep(0);
    trace("late done=" + test::py(t.done()) + " is_set=" + test::py(ev.is_set()));
    co_await t;
  }());
  EXPECT_EQ(trace.str(),
            "is_set=False; set()\nw0 woke r=True\nw1 woke r=True\nw2 woke r=True\n"
            "wait when already set -> True\nafter clear, late still waiting: done=False\n"
            "set() then clear() immediately\nlate woke r=True\nlate done=True is_set=False\n");
}

// A cancelled waiter leaves the event; one cancelled after set() woke it completes its wait.
TEST(Event, CancellationOnBothSidesOfTheWakeUp) {
  Trace trace;
  run([&]() -> Task<void> {
    Event ev;
    auto waiter = [&](std::string name) -> Task<void> {
      try {
        co_await ev.wait();
        trace(name + " woke");
        co_await sleep(0);
        trace(name + " after the next await");
      } catch (const CancelledError&) {
        trace(name + " cancelled");
        throw;
      }
    };
    auto a = create_task(waiter("a"));
    auto b = create_task(waiter("b"));
    co_await sleep(0);
    a.cancel();
    co_await sleep(0);
    ev.set();
    b.cancel();
    co_await gather(return_exceptions, a, b);
    EXPECT_TRUE(a.cancelled());
    EXPECT_TRUE(b.cancelled());
  }());
  EXPECT_EQ(trace.str(), "a cancelled\nb woke\nb cancelled\n");
}

// The documented bridge: another thread signals the loop with call_soon_threadsafe.
TEST(Event, SetFromAnotherThreadThroughCallSoonThreadsafe) {
  run([]() -> Task<void> {
    Event ev;
    EventLoop& loop = EventLoop::running();
    std::thread signaller([&] { loop.call_soon_threadsafe([&] { ev.set(); }); });
    co_await ev.wait();
    signaller.join();
    EXPECT_TRUE(ev.is_set());
  }());
}

// Waking waiters from a thread that does not run their loop is refused with RuntimeError (the
// bridge above is the supported way); the waiter is unaffected.
TEST(Event, SetFromAnotherThreadDirectlyIsARuntimeError) {
  run([]() -> Task<void> {
    Event ev;
    EventLoop& loop = EventLoop::running();
    std::string error;
    auto waiter = create_task([&]() -> Task<void> { co_await ev.wait(); });
    co_await sleep(0);  // the waiter is queued on the event
    std::thread misuser([&] {
      try {
        ev.set();
      } catch (const RuntimeError& e) {
        error = e.what();
      }
      loop.call_soon_threadsafe([&] { ev.set(); });
    });
    co_await waiter;
    misuser.join();
    EXPECT_NE(error.find("Event.set() called from a thread that does not own this loop"), std::string::npos) << error;
  }());
}

// A task of a second loop cannot join the waiters of a primitive that tasks of another loop are
// waiting on.
TEST(Lock, AwaitedFromAnotherLoopWhileItHasWaitersIsARuntimeError) {
  Lock lock;
  std::promise<EventLoop*> first_loop;
  std::promise<void> queued;
  std::thread first([&] {
    run([&]() -> Task<void> {
      co_await lock.acquire();
      auto waiter = create_task([&]() -> Task<void> {
        co_await lock.acquire();
        lock.release();
      });
      co_await sleep(0);
      first_loop.set_value(&EventLoop::running());
      queued.set_value();
      co_await waiter;
    }());
  });
  queued.get_future().wait();
  EventLoop* loop1 = first_loop.get_future().get();
  run([&]() -> Task<void> { EXPECT_THROW(co_await lock.acquire(), RuntimeError); }());
  loop1->call_soon_threadsafe([&] { lock.release(); });
  first.join();
  EXPECT_FALSE(lock.locked());
}
