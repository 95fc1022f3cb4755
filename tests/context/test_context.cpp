// async_with and class-based managers: the cm_* asyncio scenarios as traces, ownership, and
// cancellation at every await point of nested managers.
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "awith/awith.hpp"
#include "awith/testing.hpp"
#include "awith/testing/gtest.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {

// cm_01: the value aenter returns is bound (not the manager); normal exit passes null.
struct Cm01 {
  Trace& trace;
  Task<std::string> aenter() {
    trace("enter");
    co_await sleep(0);
    co_return "the-resource";
  }
  Task<void> aexit(std::exception_ptr e) {
    trace("exit args=" + test::exception_name(e));
    co_await sleep(0);
  }
};

}  // namespace

TEST(AsyncWith, Cm01AenterValueBound) {
  Trace trace;
  run([&]() -> Task<void> {
    Cm01 cm{trace};
    co_await async_with(cm, [&](std::string& v) -> Task<void> {
      trace("body v='" + v + "'");
      co_return;
    });
    trace("after");
  }());
  EXPECT_EQ(trace.str(), "enter\nbody v='the-resource'\nexit args=None\nafter\n");
}

namespace {
// cm_02 / cm_03: aexit sees the body's exception; false lets the same object propagate, true
// suppresses it.
struct Cm02 {
  Trace& trace;
  bool ret;
  Task<Cm02*> aenter() {
    trace("enter");
    co_return this;
  }
  Task<bool> aexit(std::exception_ptr e) {
    trace("exit exc=" + test::exception_name(e) + " ret=" + (ret ? "True" : "False"));
    co_return ret;
  }
};
}  // namespace

TEST(AsyncWith, Cm02AexitReceivesExceptionSameObjectPropagates) {
  Trace trace;
  run([&]() -> Task<void> {
    auto err = std::make_exception_ptr(std::invalid_argument("boom"));
    try {
      co_await async_with(Cm02{trace, false}, [&]() -> Task<void> {
        trace("body");
        std::rethrow_exception(err);
        co_return;
      });
    } catch (const std::invalid_argument&) {
      trace(std::string("caught ValueError same_object=") + (std::current_exception() == err ? "True" : "False"));
    }
  }());
  EXPECT_EQ(trace.str(), "enter\nbody\nexit exc=ValueError ret=False\ncaught ValueError same_object=True\n");
}

TEST(AsyncWith, Cm03AexitTrueSuppresses) {
  Trace trace;
  run([&]() -> Task<void> {
    std::optional<int> r = co_await async_with(Cm02{trace, true}, [&]() -> Task<int> {
      trace("body");
      throw std::out_of_range("k");
      co_return 1;
    });
    trace(std::string("suppressed; after block; result ") + (r ? "set" : "empty"));
    r = co_await async_with(Cm02{trace, true}, [&]() -> Task<int> {
      trace("body normal");
      co_return 5;
    });
    trace("after normal, result " + std::to_string(*r));
  }());
  EXPECT_EQ(trace.str(),
            "enter\nbody\nexit exc=KeyError ret=True\nsuppressed; after block; result empty\n"
            "enter\nbody normal\nexit exc=None ret=True\nafter normal, result 5\n");
}

namespace {
struct Cm04 {
  Trace& trace;
  Task<void> aenter() {
    trace("enter start");
    co_await sleep(0);
    throw std::system_error(std::make_error_code(std::errc::io_error), "enter failed");
  }
  Task<void> aexit(std::exception_ptr) {
    trace("exit (should not happen)");
    co_return;
  }
};
}  // namespace

TEST(AsyncWith, Cm04AenterRaisesNoAexit) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(Cm04{trace}, [&]() -> Task<void> {
        trace("body (should not happen)");
        co_return;
      });
    } catch (const std::system_error& e) {
      trace(std::string("caught OSError: ") + (std::string(e.what()).find("enter failed") == 0 ? "enter failed" : e.what()));
    }
  }());
  EXPECT_EQ(trace.str(), "enter start\ncaught OSError: enter failed\n");
}

namespace {
// cm_06: an exception raised by aexit replaces the body's. `raise X from ev` maps to
// awith::raise_from (the original becomes the nested exception); re-raising ev propagates the
// original object.
struct Cm06 {
  Trace& trace;
  bool from;
  Ready<> aenter() {
    trace(std::string("enter mode=") + (from ? "from" : "reraise"));
    return {};
  }
  Task<void> aexit(std::exception_ptr e) {
    trace("exit exc=" + test::exception_name(e));
    if (from) raise_from(e, std::domain_error("wrapped"));
    std::rethrow_exception(e);
    co_return;
  }
};
}  // namespace

TEST(AsyncWith, Cm06AexitRaiseFrom) {
  Trace trace;
  run([&]() -> Task<void> {
    for (bool from : {true, false}) {
      auto orig = std::make_exception_ptr(std::invalid_argument("orig"));
      try {
        co_await async_with(Cm06{trace, from}, [&]() -> Task<void> {
          std::rethrow_exception(orig);
          co_return;
        });
      } catch (const std::exception& e) {
        std::string cause = "None";
        try {
          std::rethrow_if_nested(e);
        } catch (...) {
          cause = test::exception_name(std::current_exception());
        }
        trace(std::string("caught ") + e.what() + " is_orig=" + (std::current_exception() == orig ? "True" : "False") +
              " cause=" + cause);
      }
    }
  }());
  EXPECT_EQ(trace.str(),
            "enter mode=from\nexit exc=ValueError\ncaught wrapped is_orig=False cause=ValueError\n"
            "enter mode=reraise\nexit exc=ValueError\ncaught orig is_orig=True cause=None\n");
}

namespace {
struct Cm07 {
  Trace& trace;
  Ready<> aenter() {
    trace("enter");
    return {};
  }
  Task<void> aexit(std::exception_ptr e) {
    std::string msg;
    try {
      if (e) std::rethrow_exception(e);
    } catch (const CancelledError& c) {
      msg = c.message();
    } catch (...) {
    }
    trace("exit exc=" + test::exception_name(e) + " args=('" + msg + "',)");
    co_await sleep(0);  // cleanup may await while the task is being cancelled
    co_return;
  }
};
}  // namespace

TEST(AsyncWith, Cm07CancelInBodyRunsAexit) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      co_await async_with(Cm07{trace}, [&]() -> Task<void> {
        trace("body waiting");
        co_await sleep(1h);
        trace("body resumed (should not happen)");
      });
    });
    co_await sleep(0);
    t.cancel("stop-now");
    try {
      co_await t;
    } catch (const CancelledError& e) {
      trace("caught CancelledError args=('" + e.message() + "',)");
    }
    trace(std::string("task cancelled=") + (t.cancelled() ? "True" : "False"));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "enter\nbody waiting\nexit exc=CancelledError args=('stop-now',)\n"
            "caught CancelledError args=('stop-now',)\ntask cancelled=True\n");
}

// The edge where a wake-up and a cancel cross: the task was woken (the event was set) before the
// cancel came, so its wait returns normally and its body completes; the cancel has not reached its
// code, so the cleanup that follows does not hide it: the exit's first await raises it, and the
// task ends cancelled instead of losing the request.
TEST(AsyncWith, ACancelThatArrivesAfterTheWakeUpIsNotHiddenByTheCleanupThatFollows) {
  Trace trace;
  run([&]() -> Task<void> {
    Event ev;
    auto t = create_task([&]() -> Task<void> {
      co_await async_with(Cm07{trace}, [&]() -> Task<void> {
        co_await ev.wait();
        trace("body completed");
      });
      trace("after the block (should not happen)");
    });
    co_await sleep(0);
    ev.set();       // t is woken...
    t.cancel("late");  // ...and cancelled before it runs again
    try {
      co_await t;
    } catch (const CancelledError& e) {
      trace("caught CancelledError args=('" + e.message() + "',)");
    }
    trace(std::string("task cancelled=") + (t.cancelled() ? "True" : "False"));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "enter\nbody completed\nexit exc=None args=('',)\n"
            "caught CancelledError args=('late',)\ntask cancelled=True\n");
}

namespace {
struct Swallow {
  Trace& trace;
  Ready<> aenter() {
    trace("enter");
    return {};
  }
  Ready<bool> aexit(std::exception_ptr e) {
    trace("exit exc=" + test::exception_name(e) + " -> suppress");
    return {true};
  }
};
}  // namespace

// cm_08: aexit suppressing CancelledError lets the task continue; cancelling() stays 1.
// Difference from asyncio (level-triggered, docs/design.md): the next await raises again unless
// uncancel() is called, so the worker calls uncancel() to continue as the Python one does.
TEST(AsyncWith, Cm08CancelSuppressedByAexit) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<std::string> {
      co_await async_with(Swallow{trace}, [&]() -> Task<void> { co_await sleep(10s); });
      trace("after block cancelling=" + std::to_string(current_task().cancelling()));
      try {
        co_await sleep(0);
      } catch (const CancelledError&) {
        trace("awith: the next await raises again (level-triggered)");
      }
      current_task().uncancel();
      co_await sleep(0);
      trace("continued running");
      co_return "done";
    });
    co_await sleep(0);
    t.cancel();
    auto r = co_await t;
    trace("result='" + r + "' cancelled=" + (t.cancelled() ? "True" : "False"));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "enter\nexit exc=CancelledError -> suppress\nafter block cancelling=1\n"
            "awith: the next await raises again (level-triggered)\ncontinued running\nresult='done' cancelled=False\n");
}

// cm_10: protocol lookup. In C++ the protocol is checked at compile time: a type without aexit
// is not an AsyncManager and async_with does not accept it.
namespace {
struct OnlyEnter {
  Ready<> aenter() { return {}; }
};
struct SyncOnly {
  void enter() {}
  void exit() {}
};
}  // namespace
static_assert(!AsyncManager<OnlyEnter>);
static_assert(!AsyncManager<SyncOnly>);
static_assert(AsyncManager<Swallow>);

namespace {
// A manager that records its lifetime, to check ownership (prvalue owned, lvalue borrowed).
struct Tracked {
  std::shared_ptr<int> alive = std::make_shared<int>(1);
  Trace* trace;
  explicit Tracked(Trace& t) : trace(&t) {}
  Task<Tracked*> aenter() {
    co_await sleep(0);
    co_return this;
  }
  Task<void> aexit(std::exception_ptr) {
    co_await sleep(0);
    (*trace)("exit alive=" + std::to_string(*alive));
  }
};
}  // namespace

TEST(AsyncWith, PrvalueManagersAreOwnedLvaluesBorrowed) {
  Trace trace;
  run([&]() -> Task<void> {
    // The task is created now and awaited later: a prvalue manager must live in async_with.
    auto pending = async_with(Tracked(trace), [](Tracked* t) -> Task<int> {
      co_await sleep(0);
      co_return *t->alive;
    });
    co_await sleep(0);
    EXPECT_EQ(co_await pending, 1);
    Tracked borrowed(trace);
    co_await async_with(borrowed, [&](Tracked* t) -> Task<void> {
      EXPECT_EQ(t, &borrowed);
      co_return;
    });
  }());
  EXPECT_EQ(trace.str(), "exit alive=1\nexit alive=1\n");
}

namespace {
// A constructor, not aggregate initialisation: g++ 12 destroys the members of an aggregate
// initialised in a co_await full-expression twice when the await throws (docs/design.md).
struct Stage {
  Stage(std::string n, Trace& t) : name(std::move(n)), trace(t) {}
  std::string name;
  Trace& trace;
  Task<Stage*> aenter() {
    co_await sleep(1ms);
    trace(name + " entered");
    co_return this;
  }
  Task<void> aexit(std::exception_ptr e) {
    trace(name + " exit " + test::exception_name(e));
    co_await sleep(1ms);
    co_await sleep(1ms);
    trace(name + " exit done");
  }
};
}  // namespace

// Cancels the task at exactly each await point in turn (in aenter, the body and aexit of three
// nested managers), at the await and while suspended there, and checks that every entered manager
// exits exactly once, innermost first, and that the task ends cancelled. Exits run in cleanup
// scopes: they finish their awaits, except the one during which the cancel itself was requested
// (a new request interrupts cleanup).
TEST(AsyncWith, CancelAtEveryAwaitPointRunsEveryExitOnceInOrder) {
  Trace trace;
  auto report = awith::testing::sweep_cancellation(
      [&]() -> Task<void> {
        trace.lines.clear();
        co_await async_with(Stage{"a", trace}, Stage{"b", trace}, Stage{"c", trace},
                            [&](Stage*, Stage*, Stage*) -> Task<void> {
                              co_await sleep(1ms);
                              trace("body");
                              co_await sleep(1ms);
                            });
      },
      awith::testing::gtest_check([&](const awith::testing::SweepRun& run) {
        if (!run.point) {
          EXPECT_EQ(run.outcome, awith::testing::RunOutcome::returned);
          return;
        }
        EXPECT_TRUE(run.cancelled());
        std::vector<std::string> entered, exits, done;
        for (auto& line : trace.lines) {
          if (line.find(" entered") != std::string::npos) entered.push_back(line.substr(0, 1));
          if (line.find(" exit ") != std::string::npos && line.find("done") == std::string::npos)
            exits.push_back(line.substr(0, 1));
          if (line.find(" exit done") != std::string::npos) done.push_back(line.substr(0, 1));
        }
        std::vector<std::string> reversed(entered.rbegin(), entered.rend());
        EXPECT_EQ(exits, reversed) << trace.str();
        bool cancel_inside_an_exit = run.point->index >= 5;
        EXPECT_EQ(done.size() + (cancel_inside_an_exit ? 1 : 0), entered.size()) << trace.str();
      }));
  EXPECT_EQ(report.points, 3 + 2 + 3 * 2);
  EXPECT_TRUE(report.passed()) << report.describe();
}

// Debug mode: a block abandoned mid-body (here its task can never wake, so run() ends it at
// shutdown) reports the manager that never exited.
TEST(AsyncWith, DebugReportsAManagerEnteredAndNeverExited) {
  std::vector<std::string> reports;
  LoopOptions o = test::virtual_time();
  o.debug = true;
  Trace trace;
  EXPECT_THROW(run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.describe()); });
    co_await async_with(Swallow{trace}, []() -> Task<void> { co_await std::suspend_always{}; });
  }(), o), RuntimeError);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("Swallow was entered and destroyed without its aexit"), std::string::npos) << reports[0];
}

// A body that never waits may return a plain value: no coroutine frame for it.
TEST(AsyncWith, SynchronousBody) {
  Trace trace;
  run([&]() -> Task<void> {
    int v = co_await async_with(nullcontext(20), [](int& x) { return x + 1; });
    EXPECT_EQ(v, 21);
    co_await async_with(Cm07{trace}, [&] { trace("sync body"); });
    auto three = co_await async_with(nullcontext(1), nullcontext(2), [](int& a, int& b) { return a + b; });
    EXPECT_EQ(three, 3);
  }());
  EXPECT_EQ(trace.str(), "enter\nsync body\nexit exc=None args=('',)\n");
}

// raise_from with a null cause (what aexit receives on success) throws the new exception alone.
TEST(RaiseFrom, NullCauseThrowsTheNewExceptionWithoutANestedOne) {
  try {
    raise_from(nullptr, std::domain_error("fresh"));
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "fresh");
    EXPECT_EQ(dynamic_cast<const std::nested_exception*>(&e), nullptr);
  }
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(Cm06{trace, true}, [&] { trace("body ok"); });
    } catch (const std::domain_error& e) {
      trace(std::string("caught ") + e.what() + " nested=" +
            test::py(dynamic_cast<const std::nested_exception*>(&e) != nullptr));
    }
  }());
  EXPECT_EQ(trace.str(), "enter mode=from\nbody ok\nexit exc=None\ncaught wrapped nested=False\n");
}

namespace {
// A manager that can be neither copied nor moved, and records where it lives.
class Pinned {
 public:
  explicit Pinned(Trace& trace) : trace_(trace) {}
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;
  ~Pinned() { trace_("destroyed"); }
  Task<Pinned*> aenter() {
    co_await sleep(0);
    trace_("enter");
    co_return this;
  }
  Task<void> aexit(std::exception_ptr e) {
    co_await sleep(0);
    trace_("exit " + test::exception_name(e));
  }

 private:
  Trace& trace_;
};
}  // namespace

// A temporary manager that cannot be moved is borrowed for the caller's full expression: the
// block runs while it lives, and it is destroyed after the block, at the end of the expression.
TEST(AsyncWith, ImmovableTemporaryManagerIsBorrowedForTheExpression) {
  Trace trace;
  run([&]() -> Task<void> {
    std::size_t index = co_await async_with(Barrier(1), [](std::size_t& i) { return i + 10; });
    trace("barrier index+10=" + std::to_string(index));
    co_await async_with(Pinned(trace), [&](Pinned* p) -> Task<void> {
      co_await sleep(0);
      trace(std::string("body sees the temporary: ") + test::py(p != nullptr));
    });
    trace("after");
    try {
      co_await async_with(Pinned(trace), Barrier(1), [&](Pinned*, std::size_t&) -> Task<void> {
        trace("body raises");
        throw std::invalid_argument("x");
        co_return;
      });
    } catch (const std::invalid_argument&) {
      trace("caught ValueError");
    }
  }());
  EXPECT_EQ(trace.str(),
            "barrier index+10=10\nenter\nbody sees the temporary: True\nexit None\ndestroyed\nafter\n"
            "enter\nbody raises\nexit ValueError\ndestroyed\ncaught ValueError\n");
}

static_assert(std::is_same_v<decltype(async_with(std::declval<Pinned>(), [] {})), BorrowingTask<void>>);
static_assert(std::is_same_v<decltype(async_with(std::declval<Tracked>(), [] {})), Task<void>>);
