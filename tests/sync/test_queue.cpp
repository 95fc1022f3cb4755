// Queue, PriorityQueue, LifoQueue: the sync_10/11 asyncio scenarios as traces, shutdown() with
// Python 3.13's semantics, and cancellation on both sides of a hand-off.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <algorithm>
#include <vector>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

// sync_10: put() blocks while full; blocked putters resume FIFO as get() frees slots.
TEST(Queue, Sync10BoundedPutBlocks) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<int> q(2);
    auto p = create_task([&]() -> Task<void> {
      for (int it : {1, 2, 3, 4}) {
        trace("P put " + std::to_string(it) + " ...");
        co_await q.put(it);
        trace("P put " + std::to_string(it) + " done (qsize=" + std::to_string(q.qsize()) + ")");
      }
    });
    for (int i = 0; i < 3; ++i) co_await sleep(0);
    trace("full=" + test::py(q.full()) + " qsize=" + std::to_string(q.qsize()));
    for (int i = 0; i < 4; ++i) {
      int v = co_await q.get();
      trace("got " + std::to_string(v));
      co_await sleep(0);
    }
    co_await p;
    Queue<int> u;
    for (int i = 0; i < 1000; ++i) u.put_nowait(i);
    trace("unbounded maxsize=" + std::to_string(u.maxsize()) + " full=" + test::py(u.full()) +
          " qsize=" + std::to_string(u.qsize()));
  }());
  EXPECT_EQ(trace.str(),
            "P put 1 ...\nP put 1 done (qsize=1)\nP put 2 ...\nP put 2 done (qsize=2)\nP put 3 ...\n"
            "full=True qsize=2\ngot 1\nP put 3 done (qsize=2)\nP put 4 ...\ngot 2\n"
            "P put 4 done (qsize=2)\ngot 3\ngot 4\nunbounded maxsize=0 full=False qsize=1000\n");
}

// sync_11: QueueFull / QueueEmpty, task_done() too often is a ValueError, join().
TEST(Queue, Sync11NowaitTaskDoneJoin) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<std::string> q(1);
    q.put_nowait("a");
    try {
      q.put_nowait("b");
    } catch (const QueueFull&) {
      trace("put_nowait on full -> QueueFull");
    }
    trace("get_nowait -> " + q.get_nowait());
    try {
      q.get_nowait();
    } catch (const QueueEmpty&) {
      trace("get_nowait on empty -> QueueEmpty");
    }
    q.task_done();
    try {
      q.task_done();
    } catch (const std::invalid_argument& e) {
      trace(std::string("extra task_done -> ValueError: ") + e.what());
    }
    Queue<int> work;
    for (int i = 0; i < 3; ++i) work.put_nowait(i);
    auto w = create_task([&]() -> Task<void> {
      while (true) {
        int item = co_await work.get();
        trace("W processing " + std::to_string(item));
        co_await sleep(0);
        work.task_done();
        trace("W task_done " + std::to_string(item));
      }
    });
    co_await work.join();
    trace("join returned after all task_done");
    w.cancel();
    co_await gather(return_exceptions, w);
    Queue<int> fresh;
    co_await fresh.join();
    trace("join on fresh queue returns immediately: None");
  }());
  EXPECT_EQ(trace.str(),
            "put_nowait on full -> QueueFull\nget_nowait -> a\nget_nowait on empty -> QueueEmpty\n"
            "extra task_done -> ValueError: task_done() called too many times\n"
            "W processing 0\nW task_done 0\nW processing 1\nW task_done 1\nW processing 2\n"
            "W task_done 2\njoin returned after all task_done\n"
            "join on fresh queue returns immediately: None\n");
}

TEST(Queue, PriorityAndLifoOrder) {
  PriorityQueue<std::pair<int, std::string>> pq;
  pq.put_nowait({3, "c"});
  pq.put_nowait({1, "a"});
  pq.put_nowait({2, "b"});
  std::string order;
  while (!pq.empty()) order += pq.get_nowait().second;
  EXPECT_EQ(order, "abc");
  LifoQueue<int> lq;
  for (int i = 0; i < 3; ++i) lq.put_nowait(i);
  EXPECT_EQ(lq.get_nowait(), 2);
  EXPECT_EQ(lq.get_nowait(), 1);
  EXPECT_EQ(lq.get_nowait(), 0);
  EXPECT_THROW(lq.get_nowait(), QueueEmpty);
}

// Items only need to be movable; PriorityQueue takes a comparator (here: largest first).
TEST(Queue, MoveOnlyItemsAndCustomPriority) {
  run([]() -> Task<void> {
    Queue<std::unique_ptr<int>> q(1);
    auto consumer = create_task([&]() -> Task<int> {
      auto a = co_await q.get();
      auto b = co_await q.get();
      co_return *a * 10 + *b;
    });
    co_await q.put(std::make_unique<int>(4));
    co_await q.put(std::make_unique<int>(2));
    EXPECT_EQ(co_await consumer, 42);
  }());
  PriorityQueue<int, std::greater<int>> pq;
  for (int v : {2, 9, 4}) pq.put_nowait(v);
  EXPECT_EQ(pq.get_nowait(), 9);
  EXPECT_EQ(pq.get_nowait(), 4);
  EXPECT_EQ(pq.get_nowait(), 2);
}

// Getters wait FIFO and each put goes to the first of them.
TEST(Queue, GettersAreServedFirstComeFirstServed) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<int> q;
    auto getter = [&](std::string name) -> Task<void> {
      int v = co_await q.get();
      trace(name + " got " + std::to_string(v));
    };
    auto a = create_task(getter("a"));
    auto b = create_task(getter("b"));
    co_await sleep(0);
    q.put_nowait(1);
    q.put_nowait(2);
    co_await gather(a, b);
  }());
  EXPECT_EQ(trace.str(), "a got 1\nb got 2\n");
}

// shutdown(): putters (waiting or new) raise QueueShutDown; getters drain what is left, then
// raise; join() still waits for task_done().
TEST(Queue, ShutdownLetsGettersDrainThenRaises) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<int> q(2);
    q.put_nowait(1);
    q.put_nowait(2);
    auto putter = create_task([&]() -> Task<void> {
      try {
        co_await q.put(3);
      } catch (const QueueShutDown&) {
        trace("blocked put -> QueueShutDown");
      }
    });
    co_await sleep(0);
    q.shutdown();
    co_await putter;
    EXPECT_THROW(q.put_nowait(4), QueueShutDown);
    EXPECT_THROW(co_await q.put(4), QueueShutDown);
    trace("get -> " + std::to_string(co_await q.get()));
    trace("get_nowait -> " + std::to_string(q.get_nowait()));
    try {
      co_await q.get();
    } catch (const QueueShutDown&) {
      trace("get on empty shut-down queue -> QueueShutDown");
    }
    EXPECT_THROW(q.get_nowait(), QueueShutDown);
    auto joined = create_task([&]() -> Task<void> { co_await q.join(); });
    co_await sleep(0);
    EXPECT_FALSE(joined.done());
    q.task_done();
    q.task_done();
    co_await joined;
  }());
  EXPECT_EQ(trace.str(),
            "blocked put -> QueueShutDown\nget -> 1\nget_nowait -> 2\n"
            "get on empty shut-down queue -> QueueShutDown\n");
}

// shutdown(true): queued items are dropped (and count as done), waiting getters raise.
TEST(Queue, ShutdownImmediateDropsItemsAndWakesGetters) {
  run([]() -> Task<void> {
    Queue<int> q;
    auto getter = create_task([&]() -> Task<int> { co_return co_await q.get(); });
    co_await sleep(0);
    q.shutdown(true);
    EXPECT_THROW(co_await getter, QueueShutDown);

    Queue<int> q2;
    q2.put_nowait(1);
    q2.put_nowait(2);
    auto joined = create_task([&]() -> Task<void> { co_await q2.join(); });
    co_await sleep(0);
    q2.shutdown(true);
    co_await joined;
    EXPECT_EQ(q2.qsize(), 0u);
    EXPECT_THROW(co_await q2.get(), QueueShutDown);
  }());
}

// A getter cancelled while waiting takes nothing; one cancelled after the item was handed to it
// still returns the item, and the cancellation comes at its next await.
TEST(Queue, GetterCancellationNeverLosesAnItem) {
  Trace trace;
  run([&]() -> Task<void> {
    Queue<int> q;
    auto getter = [&](std::string name) -> Task<void> {
      try {
        int v = co_await q.get();
        trace(name + " got " + std::to_string(v));
        co_await sleep(0);
      } catch (const CancelledError&) {
        trace(name + " cancelled");
        throw;
      }
    };
    auto a = create_task(getter("a"));
    auto b = create_task(getter("b"));
    auto c = create_task(getter("c"));
    co_await sleep(0);
    a.cancel();
    co_await sleep(0);
    q.put_nowait(1);  // to b (a left the queue)
    b.cancel();       // after the hand-off
    q.put_nowait(2);  // to c
    co_await gather(return_exceptions, a, b, c);
    EXPECT_EQ(q.qsize(), 0u);
  }());
  EXPECT_EQ(trace.str(), "a cancelled\nb got 1\nb cancelled\nc got 2\n");
}

// A putter cancelled while waiting puts nothing; one cancelled after get() moved its item in
// has put it.
TEST(Queue, PutterCancellationNeverDuplicatesOrLosesAnItem) {
  run([]() -> Task<void> {
    Queue<int> q(1);
    q.put_nowait(0);
    auto a = create_task([&]() -> Task<void> { co_await q.put(1); });
    auto b = create_task([&]() -> Task<void> {
      co_await q.put(2);
      co_await sleep(0);
    });
    co_await sleep(0);
    a.cancel();
    co_await sleep(0);
    EXPECT_TRUE(a.cancelled());
    EXPECT_EQ(q.get_nowait(), 0);  // frees the slot: b's item moves in
    b.cancel();
    EXPECT_THROW(co_await b, CancelledError);
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_TRUE(q.empty());
  }());
}

// Producers and consumers cancelled at random points: every item whose put() completed is
// received exactly once (by a consumer, or left in the queue), and no other item appears.
// Producers cancel a random consumer right after their put, often the one the item was just
// handed to, which has not run yet.
TEST(Queue, RandomCancellationsNeverLoseOrDuplicateAnItem) {
  run([]() -> Task<void> {
    Queue<int> q(2);
    std::vector<int> put_ok, got;
    std::mt19937 rng(7);
    std::vector<TaskHandle<void>> consumers, producers;
    for (int c = 0; c < 24; ++c) {
      consumers.push_back(create_task([&]() -> Task<void> {
        while (true) {
          got.push_back(co_await q.get());
          co_await sleep(0);
        }
      }));
    }
    for (int p = 0; p < 8; ++p) {
      producers.push_back(create_task([&, p]() -> Task<void> {
        for (int i = 0; i < 25; ++i) {
          co_await q.put(p * 100 + i);
          put_ok.push_back(p * 100 + i);
          if (rng() % 4 == 0) consumers[rng() % consumers.size()].cancel();
        }
      }));
    }
    for (int round = 0; round < 20; ++round) {
      producers[rng() % producers.size()].cancel();
      for (unsigned k = rng() % 4; k > 0; --k) co_await sleep(0);
    }
    q.shutdown();
    co_await gather(return_exceptions, producers);
    co_await gather(return_exceptions, consumers);
    while (!q.empty()) got.push_back(q.get_nowait());
    std::sort(put_ok.begin(), put_ok.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, put_ok);
    EXPECT_FALSE(put_ok.empty());
  }());
}
