// AsyncContextManager generators (@asynccontextmanager): the acm_* asyncio scenarios as traces.
#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {
AsyncContextManager<std::string> res(Trace& trace, std::string name) {
  trace(name + " enter");
  co_await sleep(0);
  co_yield name + "-value";
  co_await sleep(0);
  trace(name + " exit");
}
}  // namespace

TEST(GeneratorManager, Acm01BasicEnterExit) {
  Trace trace;
  run([&]() -> Task<void> {
    co_await async_with(res(trace, "r"), [&](std::string& v) -> Task<void> {
      trace("body v=" + v);
      co_return;
    });
    trace("after");
  }());
  EXPECT_EQ(trace.str(), "r enter\nbody v=r-value\nr exit\nafter\n");
}

namespace {
// try/finally with an await in the finally block: C++ cannot co_await inside a catch, so the
// exception is captured, the async cleanup runs, and the exception is rethrown.
AsyncContextManager<void> res02(Trace& trace) {
  trace("enter");
  std::exception_ptr error;
  try {
    co_yield {};
    trace("after yield (only on normal exit)");
  } catch (...) {
    error = std::current_exception();
  }
  co_await sleep(0);
  trace("finally cleanup");
  if (error) std::rethrow_exception(error);
}
}  // namespace

TEST(GeneratorManager, Acm02ExceptionThrownAtYield) {
  Trace trace;
  run([&]() -> Task<void> {
    auto err = std::make_exception_ptr(std::invalid_argument("boom"));
    try {
      co_await async_with(res02(trace), [&]() -> Task<void> {
        trace("body raising");
        std::rethrow_exception(err);
        co_return;
      });
    } catch (const std::invalid_argument&) {
      trace(std::string("caught ValueError same_object=") + (std::current_exception() == err ? "True" : "False"));
    }
    co_await async_with(res02(trace), [&]() -> Task<void> {
      trace("body normal");
      co_return;
    });
  }());
  EXPECT_EQ(trace.str(),
            "enter\nbody raising\nfinally cleanup\ncaught ValueError same_object=True\n"
            "enter\nbody normal\nafter yield (only on normal exit)\nfinally cleanup\n");
}

namespace {
template <class E>
AsyncContextManager<void> swallow(Trace& trace) {
  trace("enter");
  try {
    co_yield {};
  } catch (const E& e) {
    trace(std::string("generator caught ") + test::exception_name(std::current_exception()) + ": " + e.what());
  }
}
}  // namespace

TEST(GeneratorManager, Acm03CatchSuppresses) {
  Trace trace;
  run([&]() -> Task<void> {
    co_await async_with(swallow<std::invalid_argument>(trace), []() -> Task<void> {
      throw std::invalid_argument("x");
      co_return;
    });
    trace("after block (suppressed)");
    try {
      co_await async_with(swallow<std::invalid_argument>(trace), []() -> Task<void> {
        throw std::out_of_range("'not-matched'");
        co_return;
      });
    } catch (const std::out_of_range& e) {
      trace(std::string("caught KeyError ") + e.what() + " (not matched, propagated)");
    }
  }());
  EXPECT_EQ(trace.str(),
            "enter\ngenerator caught ValueError: x\nafter block (suppressed)\n"
            "enter\ncaught KeyError 'not-matched' (not matched, propagated)\n");
}

namespace {
AsyncContextManager<void> noyield(Trace& trace, bool yield) {
  trace("enter, returning without yield");
  if (yield) co_yield {};
}
AsyncContextManager<void> yields_twice() {
  co_yield {};
  co_yield {};
}
}  // namespace

TEST(GeneratorManager, Acm04DidntYieldAndDidntStop) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(noyield(trace, false), [&]() -> Task<void> {
        trace("body (should not happen)");
        co_return;
      });
    } catch (const RuntimeError& e) {
      trace(std::string("caught RuntimeError: ") + e.what());
    }
    try {
      co_await async_with(yields_twice(), []() -> Task<void> { co_return; });
    } catch (const RuntimeError& e) {
      trace(std::string("caught RuntimeError: ") + e.what());
    }
  }());
  EXPECT_EQ(trace.str(),
            "enter, returning without yield\ncaught RuntimeError: generator didn't yield\n"
            "caught RuntimeError: generator didn't stop\n");
}

namespace {
// acm_06: `raise TypeError(...) from e` inside the generator: std::throw_with_nested keeps the
// body's exception as the cause (Python's __cause__).
AsyncContextManager<void> translate(Trace& trace) {
  trace("enter");
  try {
    co_yield {};
  } catch (const std::invalid_argument& e) {
    trace(std::string("gen got ValueError('") + e.what() + "'), raising TypeError from it");
    std::throw_with_nested(std::domain_error("translated"));
  }
}
}  // namespace

TEST(GeneratorManager, Acm06ReraiseDifferent) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(translate(trace), []() -> Task<void> {
        throw std::invalid_argument("orig");
        co_return;
      });
    } catch (const std::domain_error& e) {
      std::string cause;
      try {
        std::rethrow_if_nested(e);
      } catch (const std::invalid_argument& c) {
        cause = std::string("ValueError('") + c.what() + "')";
      }
      trace(std::string("caught TypeError: ") + e.what() + " cause=" + cause);
    }
  }());
  EXPECT_EQ(trace.str(),
            "enter\ngen got ValueError('orig'), raising TypeError from it\n"
            "caught TypeError: translated cause=ValueError('orig')\n");
}

// acm_07 / acm_08 concern Python's StopIteration / StopAsyncIteration / GeneratorExit, which C++
// has no equivalent of. Mapped to their point: any exception from the body, whatever its type,
// passes through a generator that does not catch it unchanged (same object), running the
// generator's cleanup, and it is never converted.
TEST(GeneratorManager, Acm07Acm08BodyExceptionPassesThroughUnchanged) {
  struct NotAnException {
    int code;
  };
  Trace trace;
  run([&]() -> Task<void> {
    auto cm = [&]() -> AsyncContextManager<void> {
      trace("enter");
      std::exception_ptr error;
      try {
        co_yield {};
      } catch (...) {
        error = std::current_exception();
      }
      trace("finally");
      if (error) std::rethrow_exception(error);
    };
    auto err = std::make_exception_ptr(NotAnException{7});
    try {
      co_await async_with(cm(), [&]() -> Task<void> {
        std::rethrow_exception(err);
        co_return;
      });
    } catch (const NotAnException& e) {
      trace("caught NotAnException code=" + std::to_string(e.code) +
            " same_object=" + (std::current_exception() == err ? "True" : "False"));
    }
  }());
  EXPECT_EQ(trace.str(), "enter\nfinally\ncaught NotAnException code=7 same_object=True\n");
}

namespace {
AsyncContextManager<std::string> cm09(Trace& trace, std::string name, bool suppress = false) {
  trace(name + " enter");
  bool failed = false;
  try {
    co_yield name;
  } catch (const std::exception& e) {
    failed = true;
    trace(name + " saw " + test::exception_name(std::current_exception()));
    if (!suppress) {
      trace(name + " exit");
      throw;
    }
    trace(name + " suppresses");
  }
  if (!failed) trace(name + " saw no exception");
  trace(name + " exit");
}
}  // namespace

TEST(GeneratorManager, Acm09Nesting) {
  Trace trace;
  run([&]() -> Task<void> {
    co_await async_with(cm09(trace, "a"), cm09(trace, "b"), cm09(trace, "c"),
                        [&](std::string& a, std::string& b, std::string& c) -> Task<void> {
                          trace("body " + a + b + c);
                          co_return;
                        });
    trace("--");
    co_await async_with(cm09(trace, "outer"), [&]() -> Task<void> {
      co_await async_with(cm09(trace, "middle", true), [&]() -> Task<void> {
        co_await async_with(cm09(trace, "inner"), []() -> Task<void> {
          throw std::invalid_argument("x");
          co_return;
        });
      });
    });
    trace("after");
  }());
  EXPECT_EQ(trace.str(),
            "a enter\nb enter\nc enter\nbody abc\nc saw no exception\nc exit\nb saw no exception\nb exit\n"
            "a saw no exception\na exit\n--\nouter enter\nmiddle enter\ninner enter\ninner saw ValueError\n"
            "inner exit\nmiddle saw ValueError\nmiddle suppresses\nmiddle exit\nouter saw no exception\nouter exit\n"
            "after\n");
}

namespace {
AsyncContextManager<void> cm11(Trace& trace) {
  trace("enter");
  co_yield {};
  trace("exit");
}
}  // namespace

// acm_11: single use (awith raises RuntimeError where CPython 3.11 leaked an AttributeError). The
// decorator form maps to wrapping each call in async_with(cm11(...), ...): a fresh manager per call.
TEST(GeneratorManager, Acm11ReuseAndPerCallManager) {
  Trace trace;
  run([&]() -> Task<void> {
    auto c = cm11(trace);
    co_await async_with(c, [&]() -> Task<void> {
      trace("first use");
      co_return;
    });
    try {
      co_await async_with(c, [&]() -> Task<void> {
        trace("second use (should not happen)");
        co_return;
      });
    } catch (const RuntimeError& e) {
      trace(std::string("reuse -> RuntimeError: ") + e.what());
    }
    auto decorated = [&](int x) -> Task<int> {
      co_return *co_await async_with(cm11(trace), [&]() -> Task<int> {
        trace("decorated body " + std::to_string(x));
        co_return x * 2;
      });
    };
    trace("result=" + std::to_string(co_await decorated(1)));
    trace("result=" + std::to_string(co_await decorated(2)));
  }());
  EXPECT_EQ(trace.str(),
            "enter\nfirst use\nexit\nreuse -> RuntimeError: an AsyncContextManager can be entered only once\n"
            "enter\ndecorated body 1\nexit\nresult=2\nenter\ndecorated body 2\nexit\nresult=4\n");
}

TEST(GeneratorManager, CancellationReachesTheGeneratorAndItsCleanupAwaits) {
  Trace trace;
  run([&]() -> Task<void> {
    auto cm = [&]() -> AsyncContextManager<int> {
      int resource = 3;
      std::exception_ptr error;
      try {
        co_yield resource;
      } catch (...) {
        error = std::current_exception();
      }
      co_await sleep(5ms);  // graceful close while the task is being cancelled
      trace("closed after " + test::exception_name(error));
      if (error) std::rethrow_exception(error);
    };
    auto t = create_task([&]() -> Task<void> {
      co_await async_with(cm(), [](int&) -> Task<void> { co_await sleep(1h); });
    });
    co_await sleep(1ms);
    t.cancel();
    EXPECT_THROW(co_await t, CancelledError);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "closed after CancelledError\n");
}

TEST(GeneratorManager, DebugReportsAGeneratorDestroyedWhileEntered) {
  std::vector<std::string> reports;
  LoopOptions o;
  o.debug = true;
  run([&]() -> Task<void> {
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.describe()); });
    Trace trace;
    auto c = cm11(trace);
    co_await c.aenter();  // entered by hand and never exited
    co_return;
  }(), o);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("never exited"), std::string::npos);
}

namespace {
// Counts the generator frames alive: a Probe lives in each frame.
struct Probe {
  int& alive;
  explicit Probe(int& a) : alive(a) { ++alive; }
  Probe(const Probe&) = delete;
  ~Probe() { --alive; }
};

// Catches the body's exception and yields again (asyncio: "generator didn't stop after athrow()").
AsyncContextManager<void> yields_again(Trace& trace, int& alive) {
  Probe probe(alive);
  try {
    co_yield {};
  } catch (...) {
    trace("generator caught " + test::exception_name(std::current_exception()) + ", yields again");
  }
  co_yield {};
  trace("after the second yield (never runs)");
}

std::string nested_name(const std::exception& e) {
  try {
    std::rethrow_if_nested(e);
  } catch (...) {
    return test::exception_name(std::current_exception());
  }
  return "None";
}
}  // namespace

// The body raised and the generator yielded again: RuntimeError with asyncio's message, the body's
// exception (the same object) as its nested exception, and the generator closed at once.
TEST(GeneratorManager, YieldAgainAfterBodyRaisedIsRuntimeErrorWithTheBodyErrorNested) {
  Trace trace;
  int alive = 0;
  run([&]() -> Task<void> {
    auto body_error = std::make_exception_ptr(std::invalid_argument("body"));
    auto manager = yields_again(trace, alive);
    try {
      co_await async_with(manager, [&]() -> Task<void> {
        std::rethrow_exception(body_error);
        co_return;
      });
    } catch (const RuntimeError& e) {
      auto* nested = dynamic_cast<const std::nested_exception*>(&e);
      trace(std::string("caught RuntimeError: ") + e.what() + "; nested is the body's ValueError: " +
            test::py(nested && nested->nested_ptr() == body_error));
    }
    trace("generator frames alive while the manager lives: " + std::to_string(alive));
  }());
  EXPECT_EQ(trace.str(),
            "generator caught ValueError, yields again\n"
            "caught RuntimeError: generator didn't stop after athrow(); nested is the body's ValueError: True\n"
            "generator frames alive while the manager lives: 0\n");
}

// The same with a cancellation: it stays a cancellation. The task ends cancelled; what propagates
// is a CancelledError with the cancel message, nesting RuntimeError("generator didn't stop after
// athrow()"), which nests the body's CancelledError.
TEST(GeneratorManager, YieldAgainAfterCancellationStaysACancellation) {
  Trace trace;
  int alive = 0;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      try {
        co_await async_with(yields_again(trace, alive), [&]() -> Task<void> { co_await sleep(1h); });
      } catch (const CancelledError& e) {
        // CancelledError is not polymorphic, so std::rethrow_if_nested cannot see its nested
        // exception: catch it as std::nested_exception.
        std::string chain = "CancelledError('" + e.message() + "')";
        try {
          throw;
        } catch (const std::nested_exception& n) {
          try {
            n.rethrow_nested();
          } catch (const RuntimeError& r) {
            chain += std::string(" <- RuntimeError('") + r.what() + "') <- " + nested_name(r);
          }
        }
        trace("caught " + chain);
        throw;
      }
    });
    co_await sleep(1ms);
    t.cancel("stop");
    try {
      co_await t;
    } catch (const CancelledError&) {
      trace("awaiting the task raised CancelledError");
    }
    trace("task cancelled=" + test::py(t.cancelled()) + " frames alive=" + std::to_string(alive));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "generator caught CancelledError, yields again\n"
            "caught CancelledError('stop') <- RuntimeError('generator didn't stop after athrow()') <- CancelledError\n"
            "awaiting the task raised CancelledError\ntask cancelled=True frames alive=0\n");
}

namespace {
enum class GenBehaviour { rethrow, swallow, translate, yield_twice, no_yield };
AsyncContextManager<int> behaving(GenBehaviour how, int& alive) {
  Probe probe(alive);
  if (how == GenBehaviour::no_yield) co_return;
  try {
    co_yield 1;
  } catch (const std::invalid_argument&) {
    if (how == GenBehaviour::rethrow) throw;
    if (how == GenBehaviour::translate) std::throw_with_nested(std::domain_error("translated"));
  }
  if (how == GenBehaviour::yield_twice) co_yield 2;
}
}  // namespace

// Every other edge of aexit, each checked for its outcome and for the generator's locals being
// destroyed by the end of the block, with the manager owned by the block or outliving it (a
// generator left suspended at a second co_yield is closed at once). ASan's leak check covers the
// frames themselves.
TEST(GeneratorManager, EveryEdgeHasItsOutcomeAndDestroysTheFrame) {
  struct Case {
    GenBehaviour how;
    bool body_raises;
    const char* expected;
  };
  const Case cases[] = {
      {GenBehaviour::rethrow, false, "result=7"},
      {GenBehaviour::rethrow, true, "ValueError same_object=True"},
      {GenBehaviour::swallow, true, "suppressed (empty result)"},
      {GenBehaviour::translate, true, "translated, nested ValueError"},
      {GenBehaviour::yield_twice, false, "RuntimeError: generator didn't stop, nested None"},
      {GenBehaviour::yield_twice, true, "RuntimeError: generator didn't stop after athrow(), nested ValueError"},
      {GenBehaviour::no_yield, false, "RuntimeError: generator didn't yield, nested None"},
  };
  for (const Case& c : cases) {
    for (bool temporary : {true, false}) {
      int alive = 0;
      std::string outcome;
      int alive_after_block = -1;
      run([&]() -> Task<void> {
        auto err = std::make_exception_ptr(std::invalid_argument("body"));
        auto body = [&](int&) -> Task<int> {
          if (c.body_raises) std::rethrow_exception(err);
          co_return 7;
        };
        auto manager = behaving(c.how, alive);
        try {
          std::optional<int> r = temporary ? co_await async_with(std::move(manager), body)
                                           : co_await async_with(manager, body);
          outcome = r ? "result=" + std::to_string(*r) : "suppressed (empty result)";
        } catch (const std::invalid_argument&) {
          outcome = "ValueError same_object=" + test::py(std::current_exception() == err);
        } catch (const std::domain_error& e) {
          outcome = std::string(e.what()) + ", nested " + nested_name(e);
        } catch (const RuntimeError& e) {
          outcome = std::string("RuntimeError: ") + e.what() + ", nested " + nested_name(e);
        }
        alive_after_block = alive;
      }());
      EXPECT_EQ(outcome, c.expected);
      EXPECT_EQ(alive_after_block, 0) << c.expected << " temporary=" << temporary;
    }
  }
}
