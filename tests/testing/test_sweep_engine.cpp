// The sweep engine itself: what it counts as a point, where each mode cancels, what it reports, and
// that a buggy manager makes it fail at the right points.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "awith/awith.hpp"
#include "awith/testing.hpp"
#include "awith/testing/gtest.hpp"
#include "testing/counted.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::Held;
using awith::test::Ledger;
using awith::testing::CancelMode;
using awith::testing::gtest_check;
using awith::testing::RunOutcome;
using awith::testing::sweep_cancellation;
using awith::testing::SweepOptions;
using awith::testing::SweepPoint;
using awith::testing::SweepRun;

namespace {
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

// Points are the awaits of every task of the loop (the child's here), each named by its task; the
// cancel always goes to the root task, and reaches the awaited child through it.
TEST(SweepEngine, CountsTheAwaitsOfEveryTaskAndNamesTheirTask) {
  std::vector<std::string> log;
  int child_line = 0;
  std::vector<std::pair<int, std::string>> wheres;
  std::vector<int> cancels;
  SweepOptions options;
  options.on_cancel = [&](const SweepPoint& p) { cancels.push_back(p.index); };
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        log.clear();
        co_await sleep(1ms);
        child_line = __LINE__ + 1;
        auto child = create_task([&]() -> Task<void> {
          co_await sleep(1ms);
          co_await sleep(1ms);
          log.push_back("child done");
        });
        co_await child;  // a point too: it reaches the cancellation check
        log.push_back("root done");
      },
      gtest_check([&](const SweepRun& run) {
        if (!run.point) {
          EXPECT_EQ(run.outcome, RunOutcome::returned);
          EXPECT_EQ(log, (std::vector<std::string>{"child done", "root done"}));
          return;
        }
        wheres.emplace_back(run.point->index, run.point->where);
        EXPECT_TRUE(run.cancelled()) << run.describe();
        EXPECT_TRUE(run.cancel_delivered);
        EXPECT_TRUE(run.exception);
      }),
      options);
  EXPECT_EQ(report.points, 4);  // the root's sleep and its wait for the child, the child's two sleeps
  EXPECT_EQ(report.runs, 9);
  EXPECT_TRUE(report.passed()) << report.describe();
  EXPECT_EQ(cancels, (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
  ASSERT_EQ(wheres.size(), 8u);
  for (auto& [index, where] : wheres) {
    EXPECT_TRUE(contains(where, "task created at test_sweep_engine.cpp:")) << where;
    // Points 0 and 1 are the root's (created where sweep_cancellation was called), 2 and 3 the child's.
    bool childs = index >= 2;
    EXPECT_EQ(contains(where, ":" + std::to_string(child_line) + " "), childs) << index << ": " << where;
  }
}

// before_await cancels at the await itself; while_suspended once the step has returned to the
// loop, which, after an await that completed at once (a checkpoint), is at the next suspension.
TEST(SweepEngine, TheModesCancelAtTheAwaitOrAtTheNextSuspension) {
  std::vector<std::string> log;
  std::vector<std::pair<SweepPoint, std::vector<std::string>>> runs;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        log.clear();
        co_await checkpoint();  // completes at once: no suspension
        log.push_back("after the checkpoint");
        co_await sleep(1ms);
        log.push_back("after the sleep");
      },
      [&](const SweepRun& run) {
        if (run.point) runs.emplace_back(*run.point, log);
      });
  EXPECT_TRUE(report.passed()) << report.describe();
  ASSERT_EQ(report.points, 2);
  ASSERT_EQ(runs.size(), 4u);
  using Log = std::vector<std::string>;
  EXPECT_EQ(runs[0].first.mode, CancelMode::before_await);
  EXPECT_EQ(runs[0].second, Log{});                        // the checkpoint raised
  EXPECT_EQ(runs[1].first.mode, CancelMode::while_suspended);
  EXPECT_EQ(runs[1].second, Log{"after the checkpoint"});  // the step went on to the sleep
  EXPECT_EQ(runs[2].second, Log{"after the checkpoint"});  // the sleep raised at once
  EXPECT_EQ(runs[3].second, Log{"after the checkpoint"});  // the sleep was interrupted
}

TEST(SweepEngine, OptionsChooseTheModes) {
  SweepOptions options;
  options.modes = {CancelMode::while_suspended};
  std::vector<CancelMode> seen;
  auto report = sweep_cancellation(
      []() -> Task<void> {
        co_await sleep(1ms);
        co_await sleep(1ms);
      },
      [&](const SweepRun& run) {
        if (run.point) seen.push_back(run.point->mode);
      },
      options);
  EXPECT_EQ(report.points, 2);
  EXPECT_EQ(report.runs, 3);
  EXPECT_EQ(seen, (std::vector<CancelMode>{CancelMode::while_suspended, CancelMode::while_suspended}));
}

TEST(SweepEngine, AThrowingCheckFailsItsRun) {
  auto report = sweep_cancellation(
      []() -> Task<void> {
        co_await sleep(1ms);
        co_await sleep(1ms);
      },
      [](const SweepRun& run) {
        if (run.point && run.point->index == 1) throw std::runtime_error("wrong at " + run.point->describe());
      });
  EXPECT_EQ(report.points, 2);
  ASSERT_EQ(report.failures.size(), 2u);
  for (const auto& f : report.failures) {
    ASSERT_TRUE(f.point.has_value());
    EXPECT_EQ(f.point->index, 1);
    EXPECT_EQ(f.message, "wrong at " + f.point->describe());
  }
  EXPECT_TRUE(contains(report.describe(), "2 await points, 5 runs, 2 failed")) << report.describe();
}

// A scenario that does not repeat itself cannot be swept: its runs are reported, not judged.
TEST(SweepEngine, ReportsAScenarioThatIsNotDeterministic) {
  int calls = 0;
  auto report = sweep_cancellation(
      [&]() -> Task<void> {
        int awaits = ++calls == 1 ? 3 : 1;
        for (int i = 0; i < awaits; ++i) co_await sleep(1ms);
      },
      [](const SweepRun&) {}, SweepOptions{.modes = {CancelMode::before_await}});
  EXPECT_EQ(report.points, 3);
  ASSERT_EQ(report.failures.size(), 2u);
  EXPECT_EQ(report.failures[0].point->index, 1);
  EXPECT_EQ(report.failures[1].point->index, 2);
  EXPECT_TRUE(contains(report.failures[0].message, "not deterministic")) << report.failures[0].message;
}

TEST(SweepEngine, ReportsTooManyPointsAndALoopThatFails) {
  auto many = sweep_cancellation(
      []() -> Task<void> {
        for (int i = 0; i < 5; ++i) co_await sleep(1ms);
      },
      [](const SweepRun&) {}, SweepOptions{.max_points = 3});
  EXPECT_EQ(many.points, 5);
  EXPECT_EQ(many.runs, 1);
  ASSERT_EQ(many.failures.size(), 1u);
  EXPECT_TRUE(contains(many.failures[0].message, "max_points")) << many.failures[0].message;

  // Waits for an event nobody sets: on the virtual clock the loop reports the deadlock.
  auto stuck = sweep_cancellation(
      []() -> Task<void> {
        Event never;
        co_await never.wait();
      },
      [](const SweepRun&) { FAIL() << "a broken run is not handed to the check"; });
  EXPECT_EQ(stuck.runs, 1);
  ASSERT_EQ(stuck.failures.size(), 1u);
  EXPECT_FALSE(stuck.failures[0].point.has_value());
  EXPECT_TRUE(contains(stuck.failures[0].message, "deadlock")) << stuck.failures[0].message;
}

namespace {
// The deliberate bug: an aexit that returns early, without releasing, when its block was cancelled.
class LeakyOnCancel {
 public:
  explicit LeakyOnCancel(Ledger& ledger) : ledger_(ledger) {}
  Task<LeakyOnCancel*> aenter() {
    co_await sleep(1ms);
    ledger_.acquire("leaky");
    co_return this;
  }
  Task<void> aexit(std::exception_ptr e) {
    ledger_.exit_called("leaky", e);
    if (test::exception_name(e) == "CancelledError") co_return;  // the bug
    Held held(ledger_, "leaky");
    co_await test::cleanup_awaits(ledger_, "leaky");
  }

 private:
  Ledger& ledger_;
};

Task<void> leaky_scenario(Ledger& ledger) {
  ledger.reset();
  co_await async_with(LeakyOnCancel(ledger), [](LeakyOnCancel*) -> Task<void> {
    co_await sleep(1ms);
    co_await sleep(1ms);
  });
}

// The points where the leak shows: the two body awaits (1 and 2), in both modes. A cancel in
// aenter (point 0) enters nothing; one in the cleanup (3 and 4) reaches aexit after it was called
// with no exception, so it releases.
const std::set<std::pair<int, CancelMode>> kLeakingPoints{{1, CancelMode::before_await},
                                                           {1, CancelMode::while_suspended},
                                                           {2, CancelMode::before_await},
                                                           {2, CancelMode::while_suspended}};

std::set<std::pair<int, CancelMode>> failed_points(const awith::testing::SweepReport& report) {
  std::set<std::pair<int, CancelMode>> out;
  for (const auto& f : report.failures)
    if (f.point) out.emplace(f.point->index, f.point->mode);
  return out;
}
}  // namespace

TEST(SweepEngine, ABuggyManagerFailsTheSweepAtThePointsWhereItLeaks) {
  Ledger ledger;
  auto report = sweep_cancellation([&] { return leaky_scenario(ledger); },
                                   [&](const SweepRun&) {
                                     if (ledger.live() != 0) throw std::runtime_error("leaked a resource");
                                   });
  EXPECT_EQ(report.points, 5);
  EXPECT_EQ(report.failures.size(), kLeakingPoints.size()) << report.describe();
  EXPECT_EQ(failed_points(report), kLeakingPoints) << report.describe();
  for (const auto& f : report.failures) {
    EXPECT_EQ(f.message, "leaked a resource");
    EXPECT_TRUE(contains(f.point->where, "test_sweep_engine.cpp")) << f.point->where;
    EXPECT_TRUE(contains(report.describe(), f.point->describe() + ": leaked a resource")) << report.describe();
  }
}

// The same bug caught by EXPECT_EQ in a gtest_check: each failure reaches gtest with its point in
// front, and fails that run of the sweep.
TEST(SweepEngine, ABuggyManagerFailsAGtestCheckNamingThePoint) {
  Ledger ledger;
  ::testing::TestPartResultArray reported;
  awith::testing::SweepReport report;
  {
    ::testing::ScopedFakeTestPartResultReporter capture(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &reported);
    report = sweep_cancellation([&] { return leaky_scenario(ledger); },
                                gtest_check([&](const SweepRun&) { EXPECT_EQ(ledger.live(), 0) << "leaked"; }));
  }
  EXPECT_EQ(failed_points(report), kLeakingPoints) << report.describe();
  ASSERT_EQ(reported.size(), static_cast<int>(kLeakingPoints.size()));
  for (int i = 0; i < reported.size(); ++i) {
    const auto& r = reported.GetTestPartResult(i);
    EXPECT_TRUE(r.nonfatally_failed());
    EXPECT_TRUE(contains(r.message(), report.failures[i].point->describe())) << r.message();
    EXPECT_TRUE(contains(r.message(), "leaked")) << r.message();
    EXPECT_TRUE(contains(report.failures[i].message, "leaked")) << report.failures[i].message;
  }
}
