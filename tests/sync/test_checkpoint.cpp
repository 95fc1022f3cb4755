// Every operation that sometimes waits is a checkpoint, also when it completes at once; a task
// that keeps completing operations at once yields to the loop after its step budget, without
// losing or duplicating what the operation takes; busy loops still poll I/O and fire timers.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "awith/awith.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

// One operation that would complete at once, and what it would have taken.
struct ImmediateOp {
  std::string name;
  std::function<Task<void>()> op;       // awaits the operation once
  std::function<bool()> took_nothing;   // the operation left its object untouched
};

// The awaitables that can complete without suspending, each set up so that it would.
struct Fixture {
  Lock lock;
  Semaphore sem{1};
  Event event;
  Queue<int> full_queue;
  Queue<int> empty_queue{1};
  Barrier barrier{1};
  TaskHandle<int> finished;

  std::vector<ImmediateOp> ops() {
    event.set();
    full_queue.put_nowait(7);
    return {
        {"Lock.acquire", [this]() -> Task<void> { co_await lock.acquire(); }, [this] { return !lock.locked(); }},
        {"Semaphore.acquire", [this]() -> Task<void> { co_await sem.acquire(); }, [this] { return sem.value() == 1; }},
        {"Event.wait", [this]() -> Task<void> { co_await event.wait(); }, [] { return true; }},
        {"Queue.get", [this]() -> Task<void> { (void)co_await full_queue.get(); },
         [this] { return full_queue.qsize() == 1; }},
        {"Queue.put", [this]() -> Task<void> { co_await empty_queue.put(1); },
         [this] { return empty_queue.qsize() == 0; }},
        {"Barrier.wait", [this]() -> Task<void> { (void)co_await barrier.wait(); },
         [this] { return barrier.n_waiting() == 0; }},
        {"finished task", [this]() -> Task<void> { (void)co_await finished; }, [] { return true; }},
        {"gather of finished tasks", [this]() -> Task<void> { (void)co_await gather(finished, finished); },
         [] { return true; }},
        {"wait on finished tasks",
         [this]() -> Task<void> {
           std::vector<TaskHandle<int>> tasks;  // (a braced list inside a coroutine trips g++ 12)
           tasks.push_back(finished);
           (void)co_await wait(tasks);
         },
         [] { return true; }},
        {"checkpoint", []() -> Task<void> { co_await checkpoint(); }, [] { return true; }},
    };
  }
};

Task<int> forty_two() { co_return 42; }

}  // namespace

// A task that cancelled itself: the operation throws CancelledError before taking anything.
TEST(Checkpoint, ImmediateOperationsSeeTheTasksOwnCancellation) {
  run([]() -> Task<void> {
    Fixture f;
    f.finished = create_task(forty_two());
    co_await sleep(0);
    for (auto& op : f.ops()) {
      bool cancelled = false;
      auto t = create_task([&]() -> Task<void> {
        current_task().cancel();
        try {
          co_await op.op();
        } catch (const CancelledError&) {
          cancelled = true;
        }
        current_task().uncancel();
      });
      co_await t;
      EXPECT_TRUE(cancelled) << op.name;
      EXPECT_TRUE(op.took_nothing()) << op.name;
    }
  }());
}

// A task cancelled by another before its step: the first operation of the step throws.
TEST(Checkpoint, ImmediateOperationsSeeACancellationRequestedWhileReady) {
  run([]() -> Task<void> {
    Fixture f;
    f.finished = create_task(forty_two());
    co_await sleep(0);
    for (auto& op : f.ops()) {
      Event go;
      bool cancelled = false;
      auto t = create_task([&]() -> Task<void> {
        co_await go.wait();  // suspends: the cancel below arrives while it is ready to run again
        try {
          co_await op.op();
        } catch (const CancelledError&) {
          cancelled = true;
        }
      });
      co_await sleep(0);
      go.set();
      t.cancel();
      try {
        co_await t;
      } catch (const CancelledError&) {
      }
      EXPECT_TRUE(cancelled) << op.name;
      EXPECT_TRUE(op.took_nothing()) << op.name;
    }
  }());
}

// A cancellation that timeout() requests by its deadline reaches an immediate operation too.
TEST(Checkpoint, CancelScopeCancelledInTheSameStepInterruptsTheNextImmediateOperation) {
  run([]() -> Task<void> {
    Lock lock;
    bool caught = false;
    co_await async_with(CancelScope(), [&](CancelScope& scope) -> Task<void> {
      scope.cancel();
      co_await lock.acquire();
      ADD_FAILURE() << "acquired a lock inside a cancelled scope";
    });
    caught = !lock.locked();
    EXPECT_TRUE(caught);
    // And a scope left behind uncovers nothing: the next acquire takes the free lock.
    co_await lock.acquire();
    EXPECT_TRUE(lock.locked());
    lock.release();
  }());
}

// Cleanup sees only requests made after it began: an exit that takes a free lock while its task
// is being cancelled gets it.
TEST(Checkpoint, CleanupTakesAFreeLockWhileItsTaskIsCancelled) {
  struct LockingExit {
    Lock* lock;
    bool took = false;
    explicit LockingExit(Lock& l) : lock(&l) {}
    Ready<> aenter() { return {}; }
    Task<void> aexit(std::exception_ptr) {
      co_await lock->acquire();
      took = true;
      lock->release();
    }
  };
  run([]() -> Task<void> {
    Lock lock;
    LockingExit manager(lock);
    auto t = create_task([&]() -> Task<void> {
      co_await async_with(manager, [&]() -> Task<void> { co_await sleep(1h); });
    });
    co_await sleep(0);
    t.cancel();
    try {
      co_await t;
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(manager.took);
    EXPECT_FALSE(lock.locked());
  }(), LoopOptions{.virtual_clock = true});
}

// After task_budget immediate completions, the next one yields first: other ready tasks and a due
// timer run in between, and every item is taken exactly once.
TEST(Checkpoint, BudgetLetsOtherTasksAndTimersRun) {
  run([]() -> Task<void> {
    Queue<int> q;
    const int items = 10 * 128;
    for (int i = 0; i < items; ++i) q.put_nowait(i);
    int other_steps = 0;
    bool timer_fired_before_end = false;
    bool consumer_done = false;
    EventLoop::running().call_later(0s, [&] { timer_fired_before_end = !consumer_done; });
    auto other = create_task([&]() -> Task<void> {
      while (!consumer_done) {
        ++other_steps;
        co_await sleep(0);
      }
    });
    long sum = 0;
    for (int i = 0; i < items; ++i) sum += co_await q.get();
    consumer_done = true;
    co_await other;
    EXPECT_EQ(sum, static_cast<long>(items) * (items - 1) / 2);
    EXPECT_GE(other_steps, items / 128 - 1);
    EXPECT_LE(other_steps, items / 128 + 2);
    EXPECT_TRUE(timer_fired_before_end);
  }());
}

// A task whose budget is spent at a free lock yields; another task takes the lock meanwhile; the
// first one then waits for it like any waiter instead of taking it twice.
TEST(Checkpoint, AYieldedAcquireThatLostTheRaceWaitsInLine) {
  run([]() -> Task<void> {
    Lock lock;
    Semaphore sem(1000);
    std::vector<std::string> order;
    auto a = create_task([&]() -> Task<void> {
      for (int i = 0; i < 127; ++i) co_await sem.acquire();  // spends the budget but one
      co_await checkpoint();                                  // the last unit
      co_await lock.acquire();                                // yields first
      order.push_back("a holds");
      lock.release();
    });
    auto b = create_task([&]() -> Task<void> {
      co_await lock.acquire();  // runs while a yields
      order.push_back("b holds");
      co_await sleep(0);
      co_await sleep(0);
      order.push_back("b releases");
      lock.release();
    });
    co_await a;
    co_await b;
    EXPECT_EQ(order, (std::vector<std::string>{"b holds", "b releases", "a holds"}));
    EXPECT_FALSE(lock.locked());
  }());
}

// Cancelled while yielded at a queue get: nothing is taken, the item stays for the next getter.
TEST(Checkpoint, CancelledWhileYieldedTakesNothing) {
  run([]() -> Task<void> {
    Queue<int> q;
    for (int i = 0; i < 200; ++i) q.put_nowait(i);
    int taken = 0;
    auto consumer = create_task([&]() -> Task<void> {
      for (;;) {
        (void)co_await q.get();
        ++taken;
      }
    });
    co_await sleep(0);  // the consumer takes its budget's worth and yields at the next get
    consumer.cancel();
    try {
      co_await consumer;
    } catch (const CancelledError&) {
    }
    EXPECT_EQ(taken, 128);
    EXPECT_EQ(q.qsize(), 200u - 128u);
  }());
}

// Items moved through a queue by busy producers and consumers (put_nowait bursts, budget yields at
// both ends, random cancellations of consumers) arrive exactly once.
TEST(Checkpoint, BudgetYieldsNeverLoseOrDuplicateItems) {
  run([]() -> Task<void> {
    Queue<int> q(300);
    const int per_producer = 5000;
    std::vector<int> seen(3 * per_producer, 0);
    std::vector<TaskHandle<void>> producers;
    for (int p = 0; p < 3; ++p) {
      producers.push_back(create_task([&, p]() -> Task<void> {
        for (int i = 0; i < per_producer; ++i) co_await q.put(p * per_producer + i);
      }));
    }
    std::vector<TaskHandle<void>> consumers;
    auto consume = [&]() -> Task<void> {
      for (;;) ++seen[static_cast<std::size_t>(co_await q.get())];
    };
    for (int c = 0; c < 3; ++c) consumers.push_back(create_task(consume));
    for (int round = 0; round < 20; ++round) {
      co_await sleep(0);
      auto& victim = consumers[static_cast<std::size_t>(round % 3)];
      victim.cancel();
      try {
        co_await victim;
      } catch (const CancelledError&) {
      }
      victim = create_task(consume);
    }
    for (auto& p : producers) co_await p;
    while (!q.empty()) co_await sleep(0);
    for (auto& c : consumers) c.cancel();
    for (auto& c : consumers) {
      try {
        co_await c;
      } catch (const CancelledError&) {
      }
    }
    std::size_t wrong = 0;
    for (int count : seen) wrong += count != 1;
    EXPECT_EQ(wrong, 0u) << "items not delivered exactly once";
  }());
}

// unconstrained(): the budget does not apply; task_budget = 0 lifts it for the whole loop.
TEST(Checkpoint, UnconstrainedAndAZeroBudgetNeverYield) {
  auto scenario = [](bool use_unconstrained) -> Task<int> {
    Semaphore sem(100000);
    int other_steps = 0;
    bool done = false;
    auto other = create_task([&]() -> Task<void> {
      while (!done) {
        ++other_steps;
        co_await sleep(0);
      }
    });
    co_await sleep(0);
    int before = other_steps;
    auto body = [&]() -> Task<void> {
      for (int i = 0; i < 10000; ++i) co_await sem.acquire();
    };
    if (use_unconstrained) {
      co_await unconstrained(body());
    } else {
      co_await body();
    }
    int during = other_steps - before;
    done = true;
    co_await other;
    co_return during;
  };
  EXPECT_EQ(run(scenario(true)), 0);
  EXPECT_EQ(run(scenario(false), LoopOptions{.task_budget = 0}), 0);
  EXPECT_GE(run(scenario(false)), 10000 / 128 - 1);
  EXPECT_THROW(EventLoop(LoopOptions{.task_budget = -1}), std::invalid_argument);
}

// A 10 ms timeout interrupts a consumer of a queue that never runs dry (the producer keeps
// refilling it), on the real clock.
TEST(Checkpoint, TimeoutInterruptsAConsumerThatNeverWaits) {
  run([]() -> Task<void> {
    Queue<int> q;
    for (int i = 0; i < 1000; ++i) q.put_nowait(i);
    auto producer = create_task([&]() -> Task<void> {
      for (;;) {
        for (int i = 0; i < 1000 && q.qsize() < 100000; ++i) q.put_nowait(i);
        co_await sleep(0);
      }
    });
    long consumed = 0;
    auto start = Clock::now();
    bool timed_out = false;
    try {
      co_await async_with(timeout(10ms), [&](Timeout&) -> Task<void> {
        for (;;) {
          (void)co_await q.get();
          ++consumed;
        }
      });
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    auto late = Clock::now() - start - 10ms;
    producer.cancel();
    try {
      co_await producer;
    } catch (const CancelledError&) {
    }
    EXPECT_TRUE(timed_out);
    EXPECT_GT(consumed, 0);
    // Generous for sanitizer builds on a shared machine; without the budget it never fires.
    EXPECT_LT(late, 250ms);
  }());
}

// A busy loop (many always-ready tasks) still fires a due timer and serves a readable socket
// within a bounded number of task steps, not after every ready task has run many times over.
TEST(Checkpoint, BusyLoopPollsIoAndTimersEveryFewSteps) {
  run([]() -> Task<void> {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) throw std::runtime_error("socketpair");
    const int tasks = 1000;
    auto& loop = EventLoop::running();
    TimePoint due = TimePoint::max();
    bool stop = false, timer_fired = false, data_sent = false, data_seen = false;
    long steps_after_timer_due = 0, steps_after_data_sent = 0;
    std::vector<TaskHandle<void>> busy;
    for (int i = 0; i < tasks; ++i) {
      busy.push_back(create_task([&]() -> Task<void> {
        while (!stop) {
          if (!timer_fired && loop.time() >= due) ++steps_after_timer_due;
          if (data_sent && !data_seen) ++steps_after_data_sent;
          co_await sleep(0);
        }
      }));
    }
    auto reader = create_task([&]() -> Task<void> {
      FdWatch watch(fds[0]);
      co_await watch.wait_readable();
      data_seen = true;
      watch.detach();
    });
    co_await sleep(0);  // every busy task is running before the timer is armed
    due = loop.time() + 5ms;
    loop.call_at(due, [&] { timer_fired = true; });
    auto watcher = create_task([&]() -> Task<void> {
      while (!timer_fired) co_await sleep(0);
      for (int i = 0; i < 3; ++i) co_await sleep(0);  // the reader is waiting by now
      EXPECT_EQ(::write(fds[1], "x", 1), 1);
      data_sent = true;
    });
    while (!data_seen || !timer_fired) co_await sleep(0);
    stop = true;
    for (auto& t : busy) co_await t;
    co_await reader;
    co_await watcher;
    ::close(fds[0]);
    ::close(fds[1]);
    // A step is polled after at most 64 others; what was woken then runs first.
    EXPECT_LE(steps_after_timer_due, 2 * 64);
    EXPECT_LE(steps_after_data_sent, 2 * 64);
  }());
}
