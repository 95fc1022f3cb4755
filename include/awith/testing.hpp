// awith::testing: cancellation-point sweeps (link awith::testing).
//
// Cleanup code is right only if it is right wherever a cancellation lands. sweep_cancellation runs
// a scenario once to count its await points, then once more for each point and each CancelMode,
// cancelling the scenario's root task exactly there, and hands every run to a check:
// snippet: tests/snippets/testing.cpp#sweep
//
//   TEST(Pool, ConnectionsAreReturnedWhereverTheCancelLands) {
//     Pool pool;
//     auto report = awith::testing::sweep_cancellation(
//         [&]() -> awith::Task<void> {      // a fresh root task per run
//           pool.reset();
//           co_await awith::async_with(pool.connection(), [](Connection& c) -> awith::Task<void> {
//             co_await c.query("select 1");
//           });
//         },
//         [&](const awith::testing::SweepRun& run) {
//           if (pool.in_use() != 0) throw std::runtime_error("a connection was not returned");
//           if (run.point && !run.cancelled()) throw std::runtime_error("the cancel was lost");
//         });
//     EXPECT_TRUE(report.passed()) << report.describe();
//   }
//
// A check fails by throwing; with gtest, wrap it in awith::testing::gtest_check
// (awith/testing/gtest.hpp) to write EXPECT_*/ASSERT_* in it instead.
//
// Every run is a fresh loop, as awith::run makes one, with an AwaitObserver installed: every await
// that reaches the runtime's cancellation check is a point (sleeps, waits on locks, queues, events
// and tasks, checkpoint(), also those that complete at once), in every task of the loop — children
// of a TaskGroup included — while the root task is pending. Awaiting a Task coroutine directly is
// not a point: it only transfers control. On the virtual clock (the default) a deterministic
// scenario sees the same points in the same order in every run until the cancel; the sweep reports
// a scenario that does not.
#pragma once

#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "awith/source_location.hpp"
#include "awith/task.hpp"

namespace awith::testing {

enum class CancelMode {
  // At the await, just before its cancellation check: the await itself raises CancelledError,
  // without registering anything.
  before_await,
  // Right after the task step that reached the await returned to the loop: the cancel arrives
  // while the task is suspended (the interrupted wait is detached), or, when that await completed
  // at once, wherever the step went on to suspend.
  while_suspended,
};
std::string_view to_string(CancelMode mode) noexcept;

// One place the sweep cancels at. (A constructor rather than an aggregate: g++ 12 destroys the
// members of an aggregate built inside a co_await expression twice.)
struct SweepPoint {
  SweepPoint(int index, CancelMode mode, std::string where) : index(index), mode(mode), where(std::move(where)) {}
  int index;          // the index-th await point of the run (from 0), counted over all its tasks
  CancelMode mode;
  std::string where;  // the task that reached the await: "task created at file.cpp:12 in function"
  // "point 3 (before_await), an await of the task created at file.cpp:12 in function"
  std::string describe() const;
};

// How the root task ended.
enum class RunOutcome { returned, cancelled, raised };

// One run of the scenario, as the check sees it.
struct SweepRun {
  std::optional<SweepPoint> point;  // where the root task was cancelled; nullopt: the counting run
  RunOutcome outcome = RunOutcome::returned;
  std::exception_ptr exception;     // what the root task ended with: null when it returned, its
                                    // CancelledError when it ended cancelled
  bool cancel_delivered = false;    // the root task was still pending when the sweep cancelled it
  int points = 0;                   // await points the run went through
  bool cancelled() const noexcept { return outcome == RunOutcome::cancelled; }
  // "point 3 (...): the root task ended cancelled" / "counting run: the root task returned"
  std::string describe() const;
};

struct SweepFailure {
  std::optional<SweepPoint> point;  // nullopt: the counting run, or the sweep as a whole
  std::string message;
};

struct SweepReport {
  int points = 0;  // await points of the counting run
  int runs = 0;    // runs made, the counting run included
  std::vector<SweepFailure> failures;
  bool passed() const noexcept { return failures.empty(); }
  // The counts and every failure, one per line (for an assertion's message).
  std::string describe() const;
};

struct SweepOptions {
  // Each run's loop uses virtual time (LoopOptions::virtual_clock): runs are instant and exact.
  bool virtual_clock = true;
  // LoopOptions::debug for each run.
  bool debug = false;
  // A scenario with more points than this is reported as a failure and not swept.
  int max_points = 10000;
  // The modes tried at every point, in this order.
  std::vector<CancelMode> modes{CancelMode::before_await, CancelMode::while_suspended};
  // Called on the loop's thread just before the sweep cancels the root task, so that a scenario's
  // own log can record the moment the cancel arrived.
  std::function<void(const SweepPoint&)> on_cancel;
};

// Runs scenario() (a fresh root task each call) once to count its await points, then once for
// each point and each mode of options.modes, cancelling the root task there (the cancel then
// reaches its children by the library's rules). After every run, the counting run included, it
// calls check(run); a check that throws fails that run. Also fails a run: a loop that fails (a
// deadlock on the virtual clock), a scenario that throws when called, and a run that diverges
// from the counting run before its point. The root task is created at `where`.
SweepReport sweep_cancellation(std::function<Task<void>()> scenario, std::function<void(const SweepRun&)> check,
                               SweepOptions options = {}, SourceLocation where = SourceLocation::current());

}  // namespace awith::testing
