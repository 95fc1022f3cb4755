// AsyncExitStack and the helpers: the stack_* asyncio scenarios as traces.
#include <gtest/gtest.h>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {
AsyncContextManager<std::string> cm(Trace& trace, std::string name) {
  trace(name + " enter");
  std::string upper = name;
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(ch));
  co_yield upper;
  trace(name + " exit");
}
}  // namespace

TEST(AsyncExitStack, Stack01LifoOrder) {
  Trace trace;
  run([&]() -> Task<void> {
    co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Task<void> {
      std::string v = co_await stack.enter_async_context(cm(trace, "a"));
      trace("entered a -> " + v);
      stack.push_async_callback([&]() -> Task<void> {
        trace("async callback 1 kw=k");
        co_return;
      });
      stack.callback([&] { trace("sync callback 2"); });
      stack.push_async_exit([&](std::exception_ptr e) -> Task<void> {
        trace("push_async_exit et=" + test::exception_name(e));
        co_return;
      });
      co_await stack.enter_async_context(cm(trace, "b"));
      trace("body");
    });
    trace("after");
  }());
  EXPECT_EQ(trace.str(),
            "a enter\nentered a -> A\nb enter\nbody\nb exit\npush_async_exit et=None\nsync callback 2\n"
            "async callback 1 kw=k\na exit\nafter\n");
}

TEST(AsyncExitStack, Stack02InnerSuppressionHides) {
  Trace trace;
  run([&]() -> Task<void> {
    auto make_exit = [&](std::string name, bool suppress) {
      return [&trace, name, suppress](std::exception_ptr e) -> Task<bool> {
        trace(name + " exit exc=" + test::exception_name(e) + " -> " + (suppress ? "suppress" : "pass"));
        co_return suppress;
      };
    };
    co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Task<void> {
      stack.push_async_exit(make_exit("outer", false));
      stack.push_async_exit(make_exit("middle", true));
      stack.push_async_exit(make_exit("inner", false));
      trace("body raising");
      throw std::invalid_argument("x");
      co_return;
    });
    trace("after (suppressed)");
  }());
  EXPECT_EQ(trace.str(),
            "body raising\ninner exit exc=ValueError -> pass\nmiddle exit exc=ValueError -> suppress\n"
            "outer exit exc=None -> pass\nafter (suppressed)\n");
}

TEST(AsyncExitStack, Stack04PopAllAndAclose) {
  Trace trace;
  run([&]() -> Task<void> {
    AsyncExitStack moved;
    auto cb = [&](std::string tag) {
      return [&trace, tag]() -> Task<void> {
        trace("callback " + tag);
        co_return;
      };
    };
    co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Task<void> {
      stack.push_async_callback(cb("x"));
      stack.push_async_callback(cb("y"));
      moved = stack.pop_all();
      trace("leaving original stack");
      co_return;
    });
    trace("original stack exited (nothing ran)");
    co_await moved.aclose();
    trace("first aclose done");
    co_await moved.aclose();
    trace("second aclose done (no-op)");
  }());
  EXPECT_EQ(trace.str(),
            "leaving original stack\noriginal stack exited (nothing ran)\ncallback y\ncallback x\n"
            "first aclose done\nsecond aclose done (no-op)\n");
}

TEST(AsyncExitStack, Stack06CancelRunsAllExits) {
  Trace trace;
  run([&]() -> Task<void> {
    auto t = create_task([&]() -> Task<void> {
      co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Task<void> {
        for (std::string name : {"a", "b", "c"}) {
          stack.push_async_exit([&trace, name](std::exception_ptr e) -> Task<void> {
            co_await sleep(0);
            trace(name + " exit exc=" + test::exception_name(e));
          });
        }
        co_await sleep(10s);
      });
    });
    co_await sleep(0);
    t.cancel();
    try {
      co_await t;
    } catch (const CancelledError&) {
      trace(std::string("task cancelled=") + (t.cancelled() ? "True" : "False"));
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "c exit exc=CancelledError\nb exit exc=CancelledError\na exit exc=CancelledError\ntask cancelled=True\n");
}

TEST(AsyncExitStack, ExitExceptionIsSeenByTheNextAndReplacesTheOriginal) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(AsyncExitStack(), [&](AsyncExitStack& stack) -> Task<void> {
        stack.push_async_exit([&](std::exception_ptr e) -> Task<bool> {
          trace("first sees " + test::exception_name(e));
          co_return false;
        });
        stack.push_async_exit([&](std::exception_ptr) -> Task<bool> {
          throw std::invalid_argument("from exit");
          co_return false;
        });
        co_return;
      });
    } catch (const std::invalid_argument& e) {
      trace(std::string("caught ") + e.what());
    }
  }());
  EXPECT_EQ(trace.str(), "first sees ValueError\ncaught from exit\n");
}

TEST(Helpers, NullcontextSuppressAclosingTryFinally) {
  Trace trace;
  run([&]() -> Task<void> {
    int v = co_await async_with(nullcontext(41), [](int& x) -> Task<int> { co_return x + 1; });
    EXPECT_EQ(v, 42);
    co_await async_with(suppress<std::invalid_argument, std::out_of_range>(), []() -> Task<void> {
      throw std::out_of_range("gone");
      co_return;
    });
    trace("suppressed");
    struct Closable {
      Trace& trace;
      Task<void> aclose() {
        co_await sleep(0);
        trace("aclose");
      }
    } closable{trace};
    co_await async_with(aclosing(closable), [](Closable&) -> Task<void> { co_return; });
    try {
      co_await try_finally([]() -> Task<void> {
        throw std::invalid_argument("body");
        co_return;
      }, [&]() -> Task<void> {
        co_await sleep(0);
        trace("finally ran");
      });
    } catch (const std::invalid_argument&) {
      trace("rethrown");
    }
  }());
  EXPECT_EQ(trace.str(), "suppressed\naclose\nfinally ran\nrethrown\n");
}
