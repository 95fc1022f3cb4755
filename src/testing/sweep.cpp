#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "awith/loop.hpp"
#include "awith/run.hpp"
#include "awith/runtime.hpp"
#include "awith/tasks.hpp"
#include "awith/testing.hpp"

namespace awith::testing {

namespace {

std::string describe_exception(const std::exception_ptr& e) {
  if (!e) return "no exception";
  try {
    std::rethrow_exception(e);
  } catch (const CancelledError& x) {
    return x.message().empty() ? "CancelledError" : "CancelledError: " + x.message();
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception of a type not derived from std::exception";
  }
}

// An await point of the counting run: runs that follow must see the same ones until their cancel.
struct Site {
  SourceLocation task;      // where the task that reached it was created
  std::string description;  // that task's describe()
};

bool same_location(const SourceLocation& a, const SourceLocation& b) noexcept {
  return a.line == b.line && std::string_view(a.file) == b.file && std::string_view(a.function) == b.function;
}

// Sees every await of one run. Points are counted while the root task is pending (once it is done
// the sweep has nothing left to cancel). The runtime calls it from noexcept code: nothing escapes.
class PointObserver final : public detail::AwaitObserver {
 public:
  PointObserver(detail::TaskBase& root, const SweepOptions& options, const std::optional<SweepPoint>& target,
                std::vector<Site>& sites) noexcept
      : root_(root), options_(options), target_(target), sites_(sites) {}

  void on_await(detail::TaskBase& task) override {
    if (root_.done()) return;
    int index = seen_++;
    try {
      if (!target_) {
        // Past max_points the count goes on (to report it), the sites are not kept.
        if (static_cast<int>(sites_.size()) <= options_.max_points) sites_.push_back({task.where(), task.describe()});
        return;
      }
      if (index < target_->index && !divergence_ && !same_location(sites_[index].task, task.where()))
        divergence_ = "point " + std::to_string(index) + " was an await of the " + sites_[index].description +
                      " in the counting run and of the " + task.describe() +
                      " in this one: the scenario is not deterministic";
    } catch (...) {
      if (!error_) error_ = std::current_exception();
    }
    if (!target_ || index != target_->index) return;
    reached_ = true;
    if (target_->mode == CancelMode::before_await) {
      cancel_root();
    } else {
      armed_ = &task;
    }
  }

  void on_step_end(detail::TaskBase& task) override {
    if (armed_ != &task) return;
    armed_ = nullptr;
    cancel_root();
  }

  int seen() const noexcept { return seen_; }
  bool reached() const noexcept { return reached_; }
  bool delivered() const noexcept { return delivered_; }
  const std::optional<std::string>& divergence() const noexcept { return divergence_; }
  const std::exception_ptr& error() const noexcept { return error_; }

 private:
  void cancel_root() noexcept {
    if (root_.done()) return;
    try {
      if (options_.on_cancel) options_.on_cancel(*target_);
      delivered_ = root_.cancel();
    } catch (...) {
      if (!error_) error_ = std::current_exception();
    }
  }

  detail::TaskBase& root_;
  const SweepOptions& options_;
  const std::optional<SweepPoint>& target_;
  std::vector<Site>& sites_;
  detail::TaskBase* armed_ = nullptr;  // while_suspended: the task whose step reached the point
  int seen_ = 0;
  bool reached_ = false;
  bool delivered_ = false;
  std::optional<std::string> divergence_;
  std::exception_ptr error_;  // thrown by on_cancel (or an allocation failure)
};

// One run of the scenario on a loop of its own, as awith::run makes it, with the observer
// installed before the root task's first step. Returns the run and, when it could not be judged by
// the check, why.
std::pair<SweepRun, std::optional<std::string>> run_once(const std::function<Task<void>()>& scenario,
                                                         const SweepOptions& options,
                                                         const std::optional<SweepPoint>& target,
                                                         std::vector<Site>& sites, SourceLocation where) {
  SweepRun run;
  run.point = target;
  LoopOptions loop_options;
  loop_options.virtual_clock = options.virtual_clock;
  loop_options.debug = options.debug;
  loop_options.handle_sigint = false;  // a sweep makes thousands of loops: Ctrl-C is not theirs
  EventLoop loop(loop_options);
  Task<void> root;
  try {
    root = scenario();
  } catch (...) {
    return {std::move(run), "the scenario threw when called: " + describe_exception(std::current_exception())};
  }
  if (!root.valid()) return {std::move(run), std::string("the scenario returned an empty Task")};
  auto handle = create_task_on(loop, std::move(root), where);
  PointObserver observer(*handle.base(), options, target, sites);
  std::exception_ptr loop_failure;
  loop.set_await_observer(&observer);
  try {
    detail::run_main(loop, *handle.base());
  } catch (...) {
    loop_failure = std::current_exception();
  }
  loop.set_await_observer(nullptr);
  run.points = observer.seen();
  run.cancel_delivered = observer.delivered();
  if (handle.done()) {
    run.exception = handle.exception();
    run.outcome = !run.exception                           ? RunOutcome::returned
                  : detail::is_cancelled_error(run.exception) ? RunOutcome::cancelled
                                                             : RunOutcome::raised;
  }
  if (loop_failure) return {std::move(run), "the loop failed: " + describe_exception(loop_failure)};
  if (observer.error()) return {std::move(run), "on_cancel threw: " + describe_exception(observer.error())};
  if (observer.divergence()) return {std::move(run), *observer.divergence()};
  if (target && !observer.reached())
    return {std::move(run), "the run ended after " + std::to_string(run.points) +
                                " await points, before its point: the scenario is not deterministic"};
  return {std::move(run), std::nullopt};
}

}  // namespace

std::string_view to_string(CancelMode mode) noexcept {
  switch (mode) {
    case CancelMode::before_await:
      return "before_await";
    case CancelMode::while_suspended:
      return "while_suspended";
  }
  return "?";
}

std::string SweepPoint::describe() const {
  return "point " + std::to_string(index) + " (" + std::string(to_string(mode)) + "), an await of the " + where;
}

std::string SweepRun::describe() const {
  std::string s = point ? point->describe() : "counting run";
  switch (outcome) {
    case RunOutcome::returned:
      return s + ": the root task returned";
    case RunOutcome::cancelled:
      return s + ": the root task ended cancelled";
    case RunOutcome::raised:
      return s + ": the root task raised " + describe_exception(exception);
  }
  return s;
}

std::string SweepReport::describe() const {
  std::string s = std::to_string(points) + " await points, " + std::to_string(runs) + " runs, " +
                  std::to_string(failures.size()) + " failed";
  for (const auto& f : failures)
    s += "\n" + (f.point ? f.point->describe() : std::string("counting run")) + ": " + f.message;
  return s;
}

SweepReport sweep_cancellation(std::function<Task<void>()> scenario, std::function<void(const SweepRun&)> check,
                               SweepOptions options, SourceLocation where) {
  if (!scenario || !check) throw std::invalid_argument("sweep_cancellation(): the scenario and the check are required");
  SweepReport report;
  std::vector<Site> sites;
  // Returns whether the run could be judged by the check.
  auto judge = [&](std::pair<SweepRun, std::optional<std::string>> result) {
    auto& [run, broken] = result;
    ++report.runs;
    if (broken) {
      report.failures.push_back({run.point, *broken});
      return false;
    }
    try {
      check(run);
    } catch (...) {
      report.failures.push_back({run.point, describe_exception(std::current_exception())});
    }
    return true;
  };

  auto counting = run_once(scenario, options, std::nullopt, sites, where);
  report.points = counting.first.points;
  if (!judge(std::move(counting))) {
    report.failures.back().message += ": not swept";
    return report;
  }
  if (report.points > options.max_points) {
    report.failures.push_back({std::nullopt, "the scenario has more than max_points (" +
                                                 std::to_string(options.max_points) + ") await points: not swept"});
    return report;
  }
  for (int k = 0; k < report.points; ++k) {
    for (CancelMode mode : options.modes) {
      judge(run_once(scenario, options, SweepPoint(k, mode, sites[k].description), sites, where));
    }
  }
  return report;
}

}  // namespace awith::testing
