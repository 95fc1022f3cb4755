// gtest assertions in the check of a cancellation sweep (awith/testing.hpp). Header-only: the
// awith::testing library does not depend on gtest, the test that includes this does.
#pragma once

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>

#include "awith/testing.hpp"

namespace awith::testing {

// Wraps a check written with EXPECT_* / ASSERT_*. The failures of each run are reported to gtest
// again with the run's point in front of them (an assertion in a check otherwise says nothing of
// where the cancel landed), and they fail that run of the sweep, so the report lists them too:
// snippet: tests/snippets/testing.cpp#gtest_check
//
//   auto report = sweep_cancellation(scenario, gtest_check([&](const SweepRun& run) {
//     EXPECT_EQ(pool.in_use(), 0);
//     EXPECT_EQ(run.cancelled(), run.point.has_value());
//   }));
//   EXPECT_TRUE(report.passed()) << report.describe();
template <class Check>
std::function<void(const SweepRun&)> gtest_check(Check check) {
  return [check = std::move(check)](const SweepRun& run) mutable {
    ::testing::TestPartResultArray results;
    std::exception_ptr thrown;
    {
      ::testing::ScopedFakeTestPartResultReporter capture(
          ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &results);
      try {
        check(run);
      } catch (...) {
        thrown = std::current_exception();
      }
    }
    std::string failed;
    for (int i = 0; i < results.size(); ++i) {
      const ::testing::TestPartResult& r = results.GetTestPartResult(i);
      if (!r.failed()) continue;
      const char* file = r.file_name() ? r.file_name() : "unknown file";
      ADD_FAILURE_AT(file, r.line_number()) << run.describe() << "\n" << r.message();
      failed += std::string(failed.empty() ? "" : "\n") + file + ":" + std::to_string(r.line_number()) + ": " +
                r.message();
    }
    if (thrown) std::rethrow_exception(thrown);
    if (!failed.empty()) throw std::runtime_error(failed);
  };
}

}  // namespace awith::testing
