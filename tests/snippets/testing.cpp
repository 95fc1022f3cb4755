// The examples in the comments of awith/testing.hpp and awith/testing/gtest.hpp, compiled as
// GoogleTest tests that run (scripts/snippets.py checks that the headers show this code).
#include <gtest/gtest.h>

#include <stdexcept>

#include "awith/awith.hpp"
#include "awith/testing.hpp"
#include "awith/testing/gtest.hpp"

namespace {

// A pool of one connection whose every use suspends: enough for the examples to sweep.
struct Connection {
  awith::Task<void> query(const char*) { co_await awith::sleep(std::chrono::milliseconds(1)); }
};

class Pool {
 public:
  void reset() { in_use_ = 0; }
  int in_use() const { return in_use_; }
  awith::AsyncContextManager<Connection> connection() {
    co_await awith::sleep(std::chrono::milliseconds(1));
    ++in_use_;
    std::exception_ptr error;
    try {
      co_yield connection_;
    } catch (...) {
      error = std::current_exception();
    }
    --in_use_;
    if (error) std::rethrow_exception(error);
  }

 private:
  Connection connection_;
  int in_use_ = 0;
};

// snippet-begin: sweep
TEST(Pool, ConnectionsAreReturnedWhereverTheCancelLands) {
  Pool pool;
  auto report = awith::testing::sweep_cancellation(
      [&]() -> awith::Task<void> {      // a fresh root task per run
        pool.reset();
        co_await awith::async_with(pool.connection(), [](Connection& c) -> awith::Task<void> {
          co_await c.query("select 1");
        });
      },
      [&](const awith::testing::SweepRun& run) {
        if (pool.in_use() != 0) throw std::runtime_error("a connection was not returned");
        if (run.point && !run.cancelled()) throw std::runtime_error("the cancel was lost");
      });
  EXPECT_TRUE(report.passed()) << report.describe();
}
// snippet-end: sweep

TEST(Pool, GtestCheckReportsEachRun) {
  Pool pool;
  auto scenario = [&]() -> awith::Task<void> {
    pool.reset();
    co_await awith::async_with(pool.connection(), [](Connection& c) -> awith::Task<void> {
      co_await c.query("select 1");
    });
  };
  using awith::testing::gtest_check;
  using awith::testing::SweepRun;
  using awith::testing::sweep_cancellation;
  // snippet-begin: gtest_check
  auto report = sweep_cancellation(scenario, gtest_check([&](const SweepRun& run) {
    EXPECT_EQ(pool.in_use(), 0);
    EXPECT_EQ(run.cancelled(), run.point.has_value());
  }));
  EXPECT_TRUE(report.passed()) << report.describe();
  // snippet-end: gtest_check
}

}  // namespace
