// Cancellation sweeps over the context-manager layers: nested async_with blocks, generator-based
// managers, AsyncExitStack and TaskGroup. Every await point is cancelled in both modes, and every
// run is checked for exits that ran once, in reverse order, with the exception they should see.
#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "awith/awith.hpp"
#include "awith/testing.hpp"
#include "awith/testing/gtest.hpp"
#include "testing/counted.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::Ledger;
using awith::test::Resource;
using awith::testing::gtest_check;
using awith::testing::RunOutcome;
using awith::testing::sweep_cancellation;
using awith::testing::SweepRun;
using Kind = awith::test::LedgerEvent::Kind;

namespace {

// What a cancel must do to a scenario that runs in its root task only. There, the ledger's order is
// the order of the events and the cancel: nothing else runs between them.
//  - every resource acquired was released;
//  - every exit ran once, in reverse order of entry;
//  - an exit called after the cancel received CancelledError (the body, an aenter or an inner
//    exit was interrupted), one called before it None;
//  - an exit's awaits raised CancelledError only when the cancel was requested while that exit
//    ran (each exit runs in a cleanup scope of its own, which hides the cancellation the task
//    received before it began), and ran to their end otherwise: the exits after it complete;
//  - the root task ended cancelled, and the counting run returned.
void expect_unwound(const Ledger& ledger, const SweepRun& run) {
  SCOPED_TRACE(ledger.str());
  const auto& events = ledger.events();
  const std::size_t cancel = ledger.cancel_at();
  EXPECT_EQ(ledger.live(), 0) << "a resource was not released";
  auto entered = ledger.names(Kind::acquired);
  EXPECT_EQ(ledger.names(Kind::exit_called), std::vector<std::string>(entered.rbegin(), entered.rend()));
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind != Kind::exit_called) continue;
    const std::string& name = events[i].name;
    if (events[i].exception != "-") {  // a callback receives no exception
      EXPECT_EQ(events[i].exception, i > cancel ? "CancelledError" : "None") << name;
    }
    auto finished = ledger.find(Kind::exit_finished, name);
    auto raised = ledger.find(Kind::exit_raised, name);
    ASSERT_NE(finished.has_value(), raised.has_value()) << name << ": its cleanup did not end exactly once";
    const std::size_t end = finished ? *finished : *raised;
    EXPECT_EQ(raised.has_value(), i < cancel && cancel < end) << name;
    if (raised) {
      EXPECT_EQ(events[*raised].exception, "CancelledError") << name;
    }
  }
  if (!run.point) {
    EXPECT_EQ(cancel, events.size());
    EXPECT_EQ(run.outcome, RunOutcome::returned);
    return;
  }
  EXPECT_LT(cancel, events.size()) << "the sweep did not cancel";
  EXPECT_TRUE(run.cancel_delivered);
  EXPECT_TRUE(run.cancelled());
}

// The await the cancel landed at raised (before_await) or was interrupted (while_suspended): no
// manager was entered and no body or block completed after it.
void expect_nothing_went_on_after_the_cancel(const Ledger& ledger) {
  const auto& events = ledger.events();
  for (std::size_t i = ledger.cancel_at(); i < events.size(); ++i) {
    EXPECT_NE(events[i].kind, Kind::acquired) << events[i].name << "\n" << ledger.str();
    EXPECT_NE(events[i].kind, Kind::done) << events[i].name << "\n" << ledger.str();
  }
}

void expect_swept(const awith::testing::SweepReport& report, int points) {
  EXPECT_EQ(report.points, points);
  EXPECT_EQ(report.runs, 1 + 2 * points);  // the counting run, then both modes at every point
  EXPECT_TRUE(report.passed()) << report.describe();
}

}  // namespace

TEST(SweepAsyncWith, ThreeClassManagersVariadicForm) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(Resource(ledger, "a"), Resource(ledger, "b"), Resource(ledger, "c"),
                            [&](Resource*, Resource*, Resource*) -> Task<void> {
                              co_await sleep(1ms);
                              co_await sleep(1ms);
                              ledger.done("body");
                            });
      },
      gtest_check([&](const SweepRun& run) {
        expect_unwound(ledger, run);
        expect_nothing_went_on_after_the_cancel(ledger);
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 3 + 2 + 3 * 2);  // three aenters, the body's two awaits, three cleanups of two
}

TEST(SweepAsyncWith, ThreeClassManagersNestedLambdaForm) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(Resource(ledger, "a"), [&](Resource*) -> Task<void> {
          co_await async_with(Resource(ledger, "b"), [&](Resource*) -> Task<void> {
            co_await sleep(1ms);  // inside b, before c
            co_await async_with(Resource(ledger, "c"), [&](Resource*) -> Task<void> {
              co_await sleep(1ms);
              ledger.done("c's body");
            });
            co_await sleep(1ms);  // inside b, after c has exited
            ledger.done("b's body");
          });
          ledger.done("a's body");
        });
      },
      gtest_check([&](const SweepRun& run) {
        expect_unwound(ledger, run);
        expect_nothing_went_on_after_the_cancel(ledger);
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 3 + 3 + 3 * 2);
}

TEST(SweepGeneratorManager, ThreeGeneratorManagersVariadicForm) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(awith::test::counted(ledger, "a"), awith::test::counted(ledger, "b"),
                            awith::test::counted(ledger, "c"),
                            [&](std::string&, std::string&, std::string&) -> Task<void> {
                              co_await sleep(1ms);
                              co_await sleep(1ms);
                              ledger.done("body");
                            });
      },
      gtest_check([&](const SweepRun& run) {
        expect_unwound(ledger, run);
        expect_nothing_went_on_after_the_cancel(ledger);
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 3 + 2 + 3 * 2);
}

// A generator manager and a class manager nested inside each other by lambdas.
TEST(SweepGeneratorManager, MixedWithClassManagersNestedLambdaForm) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(awith::test::counted(ledger, "outer"), [&](std::string&) -> Task<void> {
          co_await async_with(Resource(ledger, "middle"), [&](Resource*) -> Task<void> {
            co_await async_with(awith::test::counted(ledger, "inner"), [&](std::string&) -> Task<void> {
              co_await sleep(1ms);
              ledger.done("inner's body");
            });
            co_await sleep(1ms);
            ledger.done("middle's body");
          });
        });
      },
      gtest_check([&](const SweepRun& run) {
        expect_unwound(ledger, run);
        expect_nothing_went_on_after_the_cancel(ledger);
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 3 + 2 + 3 * 2);
}

// A generator that absorbs the body's exception (suppresses it, as contextlib.suppress does).
// Absorbing a CancelledError does not end the cancellation: it is level-triggered, so the next
// await of the task, after the block, raises it again, and the task still ends cancelled.
TEST(SweepGeneratorManager, AManagerThatAbsorbsTheCancellationDoesNotEndIt) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(awith::test::counted(ledger, "outer"), [&](std::string&) -> Task<void> {
          co_await async_with(awith::test::absorbing(ledger, "absorbing"), [&]() -> Task<void> {
            co_await sleep(1ms);
            ledger.done("absorbed body");
          });
          ledger.done("after the absorbing block");
          co_await sleep(1ms);  // raises again when the absorbed exception was the cancellation
          ledger.done("outer's body");
        });
      },
      gtest_check([&](const SweepRun& run) {
        expect_unwound(ledger, run);
        SCOPED_TRACE(ledger.str());
        const std::size_t cancel = ledger.cancel_at();
        auto absorbing_exit = ledger.find(Kind::exit_called, "absorbing");
        auto after_block = ledger.find(Kind::done, "after the absorbing block");
        // The block ends normally, after the cancel, exactly when the cancel reached its body (the
        // exit received CancelledError and absorbed it): a cancel during the absorbing exit itself
        // is a new request that interrupts its cleanup, and a generator that raises from its
        // cleanup propagates that.
        bool absorbed = absorbing_exit && *absorbing_exit > cancel;
        if (absorbed) {
          ASSERT_TRUE(after_block.has_value());
          EXPECT_GT(*after_block, cancel);
        }
        // Nothing else went on after the cancel: no enter, no other body or block completed.
        for (std::size_t i = cancel; i < ledger.events().size(); ++i) {
          const auto& e = ledger.events()[i];
          EXPECT_NE(e.kind, Kind::acquired) << e.name;
          if (e.kind == Kind::done) {
            EXPECT_TRUE(absorbed && e.name == "after the absorbing block") << e.name;
          }
        }
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 2 + 1 + 2 + 1 + 2);  // two aenters, the body, its cleanup, the await after, the outer cleanup
}

// Managers of both kinds entered on an AsyncExitStack, with callbacks between them.
TEST(SweepAsyncExitStack, ManagersAndCallbacksUnwindInReverseOrder) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Task<void> {
          co_await stack.enter_async_context(Resource(ledger, "a"));
          awith::test::push_counted_callback(stack, ledger, "callback 1");
          co_await stack.enter_async_context(awith::test::counted(ledger, "b"));
          co_await stack.enter_async_context(Resource(ledger, "c"));
          awith::test::push_counted_callback(stack, ledger, "callback 2");
          co_await sleep(1ms);
          co_await sleep(1ms);
          ledger.done("body");
        });
      },
      gtest_check([&](const SweepRun& run) {
        expect_unwound(ledger, run);
        expect_nothing_went_on_after_the_cancel(ledger);
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 3 + 2 + 5 * 2);  // three aenters, the body, five exits of two awaits
}

namespace {
// A child of the group: a class manager and a generator manager around a body of two awaits.
// The body and the block are built before the co_await: g++ 12 destroys a closure with
// non-trivial captures twice when it is built inside a co_await expression.
Task<void> child_work(Ledger& ledger, std::string name) {
  auto body = [&ledger, name](Resource*, std::string&) -> Task<void> {
    co_await sleep(1ms);
    co_await sleep(1ms);
    ledger.done(name + "'s body");
  };
  Task<void> block = async_with(Resource(ledger, name + ".resource"),
                                awith::test::counted(ledger, name + ".generator"), std::move(body));
  co_await awith::test::logged(ledger, name + "'s block", std::move(block));
}

// The exception a block ended with, from the ledger: "None" when it completed.
std::string block_outcome(const Ledger& ledger, const std::string& block) {
  if (ledger.find(Kind::done, block)) return "None";
  auto raised = ledger.find(Kind::raised, block);
  return raised ? ledger.events()[*raised].exception : "never ended";
}
// What an exit passed on to the block around it: what its cleanup raised, else what it received
// (these managers never suppress).
std::string passed_on(const Ledger& ledger, const std::string& manager) {
  if (auto raised = ledger.find(Kind::exit_raised, manager)) return ledger.events()[*raised].exception;
  auto called = ledger.find(Kind::exit_called, manager);
  return called ? ledger.events()[*called].exception : "never exited";
}
std::string received(const Ledger& ledger, const std::string& manager) {
  auto called = ledger.find(Kind::exit_called, manager);
  return called ? ledger.events()[*called].exception : "never exited";
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// Whether the group's body completed after the cancel: the root task had already been woken from
// the body's last await when the cancel came (a child's step ended first), so it resumed normally.
bool group_body_resumed_after_the_cancel(const Ledger& ledger) {
  auto body_end = ledger.find(Kind::done, "group's body");
  return body_end && *body_end > ledger.cancel_at();
}

// The checks of a group whose children x and y run child_work, inside `outer`. The children run
// in tasks of their own, cancelled by the group when the cancellation reaches it, so the ledger
// does not say when each of them saw it: exceptions are checked along each task's chain of
// blocks instead (each exit receives what the block inside it ended with).
void expect_group_unwound(const Ledger& ledger, const SweepRun& run) {
  SCOPED_TRACE(ledger.str());
  const std::size_t cancel = ledger.cancel_at();
  EXPECT_EQ(ledger.live(), 0) << "a resource was not released";
  for (std::string owner : {"outer", "x.", "y."}) {
    auto mine = [&](const std::string& name) { return starts_with(name, owner); };
    auto entered = ledger.names(Kind::acquired, mine);
    EXPECT_EQ(ledger.names(Kind::exit_called, mine), std::vector<std::string>(entered.rbegin(), entered.rend()))
        << owner;
  }
  for (std::string child : {"x", "y"}) {
    if (!ledger.find(Kind::acquired, child + ".generator")) continue;  // cancelled before it entered
    std::string body = ledger.find(Kind::done, child + "'s body") ? "None" : "CancelledError";
    EXPECT_EQ(received(ledger, child + ".generator"), body) << child;
    EXPECT_EQ(received(ledger, child + ".resource"), passed_on(ledger, child + ".generator")) << child;
    EXPECT_EQ(block_outcome(ledger, child + "'s block"), passed_on(ledger, child + ".resource")) << child;
  }
  if (ledger.find(Kind::acquired, "outer")) {
    EXPECT_EQ(received(ledger, "outer"), block_outcome(ledger, "group's block"));
  }
  // A cancellation comes from the sweep's cancel only. A cleanup scope hides the cancellation its
  // task is unwinding from, and each task here is cancelled once: an exit that received
  // CancelledError runs to its end. One that received None is interrupted when its task's
  // cancellation reaches it there (requested while it ran, or just before, when the task's body
  // had already been woken and completed without another checkpoint).
  const auto& events = ledger.events();
  for (std::size_t i = 0; i < cancel && i < events.size(); ++i)
    EXPECT_NE(events[i].exception, "CancelledError") << events[i].name;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].kind != Kind::exit_raised) continue;
    EXPECT_EQ(received(ledger, events[i].name), "None")
        << events[i].name << "'s cleanup was interrupted by the cancellation it was unwinding from";
  }
  if (!run.point) {
    EXPECT_EQ(cancel, events.size());
    EXPECT_EQ(run.outcome, RunOutcome::returned);
    return;
  }
  EXPECT_TRUE(run.cancel_delivered);
  EXPECT_TRUE(run.cancelled());
}

// The group's block ends cancelled whenever the cancel came before it ended: the group re-raises
// its task's cancellation.
void expect_group_block_cancelled(const Ledger& ledger) {
  auto group_end = ledger.find(Kind::done, "group's block");
  EXPECT_FALSE(group_end && *group_end > ledger.cancel_at())
      << "the group's block ended normally after the cancel\n" << ledger.str();
}
}  // namespace

// Children holding managers in a TaskGroup, itself inside a manager of the root task.
TEST(SweepTaskGroup, ChildrenHoldingManagers) {
  Ledger ledger;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(Resource(ledger, "outer"), [&](Resource*) -> Task<void> {
          auto group = async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
            tg.create_task(child_work(ledger, "x"));
            tg.create_task(child_work(ledger, "y"));
            co_await sleep(1ms);
            ledger.done("group's body");
          });
          co_await awith::test::logged(ledger, "group's block", std::move(group));
        });
      },
      gtest_check([&](const SweepRun& run) {
        expect_group_unwound(ledger, run);
        expect_group_block_cancelled(ledger);
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 1 + 1 + 1 + 2 * 8 + 2);  // outer's aenter, the body's await, the exit's wait
                                                // for the children, 8 per child, outer's cleanup
}

// The same, with the group's body letting the children start before it sleeps: their timers then
// fire before the body's, in the same turn of the loop, so at some points (a child's awaits at that
// moment) the cancel comes while the root task is already woken from the body's sleep and not yet
// running again. A wake-up is never lost, so the root resumes normally; the request has not
// reached its code yet, so the cleanup scopes it enters next do not hide it: the group's exit sees
// it at its first await, cancels the children and raises, as for any other point. (asyncio throws
// the CancelledError where the root resumes, in the group's body: the outcome is the same, a
// cancelled group and a cancelled task.)
TEST(SweepTaskGroup, ACancelArrivingAfterTheWakeUpStillCancelsTheGroup) {
  Ledger ledger;
  std::set<int> resumed_points;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        ledger.reset();
        co_await async_with(Resource(ledger, "outer"), [&](Resource*) -> Task<void> {
          auto group = async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
            tg.create_task(child_work(ledger, "x"));
            tg.create_task(child_work(ledger, "y"));
            co_await sleep(0);  // the children start and arm their timers first
            co_await sleep(1ms);
            ledger.done("group's body");
          });
          co_await awith::test::logged(ledger, "group's block", std::move(group));
        });
        co_await sleep(1ms);  // never reached: the blocks raise
        ledger.done("after the blocks");
      },
      gtest_check([&](const SweepRun& run) {
        expect_group_unwound(ledger, run);
        SCOPED_TRACE(ledger.str());
        if (!run.point) return;
        EXPECT_FALSE(ledger.find(Kind::done, "after the blocks"));
        expect_group_block_cancelled(ledger);
        if (group_body_resumed_after_the_cancel(ledger)) {
          EXPECT_EQ(block_outcome(ledger, "group's block"), "CancelledError");
          EXPECT_EQ(received(ledger, "outer"), "CancelledError");
          resumed_points.insert(run.point->index);
        }
      }),
      awith::test::logging_cancels(ledger));
  expect_swept(report, 1 + 2 + 1 + 2 * 8 + 2 + 1);
  // The points where the root was woken when the cancel came: the children's awaits that share
  // the turn of the loop in which the body's sleep ends (their generator managers' aenter). These
  // runs were checked like every other one above.
  EXPECT_EQ(resumed_points, (std::set<int>{5, 6}));
}
