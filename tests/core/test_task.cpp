// Task<T>: laziness, nesting, exceptions, void and reference results, symmetric transfer depth.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "awith/awith.hpp"

using namespace awith;

namespace {

Task<int> answer() { co_return 42; }
Task<int> plus_one() { co_return co_await answer() + 1; }
Task<void> nothing(int& touched) {
  touched = 1;
  co_return;
}
Task<int&> ref_to(int& x) { co_return x; }
Task<std::unique_ptr<int>> move_only() { co_return std::make_unique<int>(7); }
Task<int> thrower() {
  throw std::runtime_error("boom");
  co_return 0;
}

Task<long> chain(long n) {
  if (n == 0) co_return 0;
  co_return co_await chain(n - 1) + 1;
}
Task<long> ready_loop(long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) sum += co_await chain(0);
  co_return sum;
}

}  // namespace

TEST(Task, AwaitsNestedValue) { EXPECT_EQ(run(plus_one()), 43); }

TEST(Task, IsLazy) {
  int touched = 0;
  {
    auto t = nothing(touched);
    EXPECT_EQ(touched, 0);
  }
  EXPECT_EQ(touched, 0);
  run(nothing(touched));
  EXPECT_EQ(touched, 1);
}

TEST(Task, ReferenceResult) {
  int x = 5;
  run([&]() -> Task<void> {
    int& r = co_await ref_to(x);
    r = 9;
  }());
  EXPECT_EQ(x, 9);
}

TEST(Task, MoveOnlyResult) { EXPECT_EQ(*run(move_only()), 7); }

TEST(Task, ExceptionPropagatesToAwaiter) {
  auto outer = []() -> Task<std::string> {
    try {
      co_await thrower();
    } catch (const std::runtime_error& e) {
      co_return e.what();
    }
    co_return "none";
  };
  EXPECT_EQ(run(outer()), "boom");
  EXPECT_THROW(run(thrower()), std::runtime_error);
}

TEST(Task, AwaitTwiceIsAnError) {
  run([]() -> Task<void> {
    auto t = answer();
    EXPECT_EQ(co_await t, 42);
    EXPECT_THROW(co_await t, InvalidStateError);
    Task<int> empty;
    EXPECT_THROW(co_await empty, InvalidStateError);
  }());
}

// Symmetric transfer: a million nested awaits and ten million immediately-ready awaits run in
// constant stack (this would overflow an 8 MiB stack if a resume were not a tail call).
TEST(Task, MillionDeepChainDoesNotGrowTheStack) { EXPECT_EQ(run(chain(1'000'000)), 1'000'000); }
TEST(Task, TenMillionReadyAwaits) { EXPECT_EQ(run(ready_loop(10'000'000)), 0); }
