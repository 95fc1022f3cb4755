// TaskGroup: the tg_* asyncio scenarios as traces, no-orphan guarantees, ExceptionGroup helpers.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "awith/awith.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::Trace;

namespace {
std::string list(std::vector<std::string> v, bool sort = false) {
  if (sort) std::sort(v.begin(), v.end());
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", '" : "'") + v[i] + "'";
  return out + "]";
}
std::vector<std::string> reprs(const ExceptionGroup& eg) {
  std::vector<std::string> out;
  for (auto& e : eg.exceptions()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::invalid_argument& x) {
      out.push_back(std::string("ValueError('") + x.what() + "')");
    } catch (const std::logic_error& x) {
      out.push_back(std::string("RuntimeError('") + x.what() + "')");
    } catch (const std::exception& x) {
      out.push_back(x.what());
    }
  }
  return out;
}
}  // namespace

TEST(TaskGroup, Tg01WaitsAllChildren) {
  Trace trace;
  run([&]() -> Task<void> {
    TaskHandle<std::string> t1, t2;
    std::function<Task<std::string>(std::string, int, TaskGroup*)> child;
    child = [&](std::string name, int ticks, TaskGroup* tg) -> Task<std::string> {
      for (int i = 0; i < ticks; ++i) co_await sleep(0);
      if (tg) tg->create_task(child(name + ".sub", 2, nullptr));
      trace(name + " done");
      co_return name;
    };
    co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
      t1 = tg.create_task(child("c1", 3, nullptr));
      t2 = tg.create_task(child("c2", 1, &tg));
      trace("body end");
      co_return;
    });
    trace("after group: " + t1.result() + ", " + t2.result());
  }());
  EXPECT_EQ(trace.str(), "body end\nc2 done\nc1 done\nc2.sub done\nafter group: c1, c2\n");
}

TEST(TaskGroup, Tg02FailureCancelsSiblingsAndBody) {
  Trace trace;
  std::vector<std::string> sibling_log;
  run([&]() -> Task<void> {
    // The cleanup awaits while the task is being cancelled: in awith that is a cleanup scope
    // (try_finally), since a plain catch block would see the cancellation again (level-triggered).
    auto sleeper = [&](std::string name) -> Task<void> {
      co_await try_finally([]() -> Task<void> { co_await sleep(10s); },
                           [&]() -> Task<void> {
                             sibling_log.push_back(name + " cancelled");
                             co_await sleep(0);
                             sibling_log.push_back(name + " cleanup done");
                           });
    };
    auto failer = [&]() -> Task<void> {
      co_await sleep(0);
      trace("failer raising");
      throw std::invalid_argument("child failed");
    };
    try {
      co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
        tg.create_task(sleeper("s1"));
        tg.create_task(failer());
        tg.create_task(sleeper("s2"));
        try {
          co_await sleep(10s);
        } catch (const CancelledError&) {
          trace("body cancelled");
          throw;
        }
      });
    } catch (const ExceptionGroup& eg) {
      auto rest = except_star<std::invalid_argument>(eg, [&](const std::invalid_argument&) {});
      EXPECT_FALSE(rest);
      trace("except* ValueError: ExceptionGroup msg='" + eg.message() + "' excs=" + list(reprs(eg)));
    }
    trace("siblings (sorted): " + list(sibling_log, true));
    trace("main cancelling=" + std::to_string(current_task().cancelling()));
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "failer raising\nbody cancelled\n"
            "except* ValueError: ExceptionGroup msg='unhandled errors in a TaskGroup' excs=['ValueError('child failed')']\n"
            "siblings (sorted): ['s1 cancelled', 's1 cleanup done', 's2 cancelled', 's2 cleanup done']\n"
            "main cancelling=0\n");
}

TEST(TaskGroup, Tg04NestedGroupsAndExceptStar) {
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
        tg.create_task([]() -> Task<void> {
          throw ExceptionGroup("inner", {std::make_exception_ptr(std::out_of_range("k"))});
          co_return;
        });
        co_return;
      });
    } catch (const ExceptionGroup& eg) {
      try {
        std::rethrow_exception(eg.exceptions().at(0));
      } catch (const ExceptionGroup& inner) {
        trace("nested: outer='" + eg.message() + "' inner=ExceptionGroup('" + inner.message() + "', " +
              std::to_string(inner.exceptions().size()) + ")");
      }
    }
    try {
      co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
        tg.create_task([]() -> Task<void> {
          throw std::invalid_argument("c");
          co_return;
        });
        tg.create_task([]() -> Task<void> {
          throw std::system_error(std::make_error_code(std::errc::io_error), "o");
          co_return;
        });
        co_return;
      });
    } catch (const ExceptionGroup& eg) {
      auto rest = except_star<std::invalid_argument>(eg, [&](const std::invalid_argument& e) {
        trace(std::string("except* ValueError got ") + e.what());
      });
      EXPECT_TRUE(rest);
      if (!rest) co_return;
      rest = except_star<std::system_error>(*rest, [&](const std::system_error&) { trace("except* OSError got o"); });
      EXPECT_FALSE(rest);
      EXPECT_NE(std::string(eg.what()).find("2 sub-exceptions"), std::string::npos);
    }
  }());
  EXPECT_EQ(trace.str(),
            "nested: outer='unhandled errors in a TaskGroup' inner=ExceptionGroup('inner', 1)\n"
            "except* ValueError got c\nexcept* OSError got o\n");
}

TEST(TaskGroup, Tg05BodyExceptionJoinsTheGroupLast) {
  Trace trace;
  std::vector<std::string> log;
  run([&]() -> Task<void> {
    auto child = [&](std::string name, bool fail_on_cancel) -> Task<void> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        log.push_back(name + " cancelled");
        if (fail_on_cancel) throw std::logic_error(name + " cleanup error");
        throw;
      }
    };
    try {
      co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
        tg.create_task(child("c1", false));
        tg.create_task(child("c2", true));
        co_await sleep(0);
        trace("body raising");
        throw std::invalid_argument("body");
      });
    } catch (const ExceptionGroup& eg) {
      trace("children (sorted): " + list(log, true));
      trace("ExceptionGroup: " + list(reprs(eg)));
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "body raising\nchildren (sorted): ['c1 cancelled', 'c2 cancelled']\n"
            "ExceptionGroup: ['RuntimeError('c2 cleanup error')', 'ValueError('body')']\n");
}

TEST(TaskGroup, Tg06CreateTaskAfterShutdown) {
  Trace trace;
  run([&]() -> Task<void> {
    TaskGroup tg;
    bool ran = false;
    auto noop = [&]() -> Task<void> {
      ran = true;
      co_return;
    };
    auto try_create = [&](const std::string& tag) {
      try {
        tg.create_task(noop());
      } catch (const RuntimeError& e) {
        trace(tag + " -> RuntimeError: " + e.what());
      }
    };
    try_create("before-enter");
    try {
      co_await async_with(tg, [&](TaskGroup& g) -> Task<void> {
        g.create_task([&]() -> Task<void> {
          co_await try_finally([]() -> Task<void> { co_await sleep(10s); },
                               [&]() -> Task<void> {
                                 try_create("during-shutdown");
                                 co_return;
                               });
        });
        co_await sleep(0);
        g.create_task([]() -> Task<void> {
          throw std::invalid_argument("x");
          co_return;
        });
      });
    } catch (const ExceptionGroup& eg) {
      trace("group raised " + list(reprs(eg)));
    }
    try_create("after-exit");
    EXPECT_FALSE(ran);
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "before-enter -> RuntimeError: TaskGroup <TaskGroup> has not been entered\n"
            "during-shutdown -> RuntimeError: TaskGroup <TaskGroup tasks=1 errors=1 cancelling> is shutting down\n"
            "group raised ['ValueError('x')']\n"
            "after-exit -> RuntimeError: TaskGroup <TaskGroup cancelling> is finished\n");
}

TEST(TaskGroup, Tg08OuterCancelOfTheParent) {
  Trace trace;
  std::vector<std::string> log;
  run([&]() -> Task<void> {
    auto child = [&](std::string name, bool fail_on_cancel) -> Task<void> {
      try {
        co_await sleep(10s);
      } catch (const CancelledError&) {
        log.push_back(name + " cancelled");
        if (fail_on_cancel) throw std::invalid_argument(name + " failed in cleanup");
        throw;
      }
    };
    for (bool fail : {false, true}) {
      auto t = create_task([&, fail]() -> Task<void> {
        co_await async_with(TaskGroup(), [&, fail](TaskGroup& tg) -> Task<void> {
          tg.create_task(child("c1", false));
          tg.create_task(child("c2", fail));
          try {
            co_await sleep(10s);
          } catch (const CancelledError&) {
            trace("body cancelled");
            throw;
          }
        });
      });
      co_await sleep(0);
      co_await sleep(0);
      t.cancel();
      log.clear();
      std::string f = fail ? "True" : "False";
      try {
        co_await t;
      } catch (const CancelledError&) {
        trace("fail=" + f + ": children " + list(log, true) + "; parent cancelled=" + (t.cancelled() ? "True" : "False"));
      } catch (const ExceptionGroup& eg) {
        trace("fail=" + f + ": children " + list(log, true) + "; parent raised ExceptionGroup " + list(reprs(eg)));
      }
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(),
            "body cancelled\nfail=False: children ['c1 cancelled', 'c2 cancelled']; parent cancelled=True\n"
            "body cancelled\nfail=True: children ['c1 cancelled', 'c2 cancelled']; parent raised ExceptionGroup "
            "['ValueError('c2 failed in cleanup')']\n");
}

TEST(TaskGroup, Tg09ChildCancelledIsNotAnError) {
  Trace trace;
  run([&]() -> Task<void> {
    TaskHandle<void> a, b;
    auto child = [&](std::string name, int ticks) -> Task<void> {
      for (int i = 0; i < ticks; ++i) co_await sleep(0);
      trace(name + " finished");
    };
    co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
      a = tg.create_task(child("a", 5));
      b = tg.create_task(child("b", 2));
      co_await sleep(0);
      a.cancel();
      co_await sleep(0);
      trace("body continues");
    });
    trace(std::string("group exited normally; a.cancelled=") + (a.cancelled() ? "True" : "False") +
          " b.done=" + (b.done() ? "True" : "False"));
  }());
  EXPECT_EQ(trace.str(), "body continues\nb finished\ngroup exited normally; a.cancelled=True b.done=True\n");
}

// No orphans: a new cancellation while the exit waits cancels the children and keeps waiting for
// them; the block never ends with a child still running.
TEST(TaskGroup, NoOrphanWhenTheExitItselfIsCancelled) {
  Trace trace;
  run([&]() -> Task<void> {
    TaskHandle<void> child;
    auto parent = create_task([&]() -> Task<void> {
      co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
        child = tg.create_task([&]() -> Task<void> {
          co_await try_finally([]() -> Task<void> { co_await sleep(10s); },
                               [&]() -> Task<void> {
                                 co_await sleep(50ms);  // slow cleanup after its cancellation
                                 trace("child cleanup finished");
                               });
        });
        co_return;  // the body ends at once; the exit waits for the child
      });
      trace("group left");
    });
    co_await sleep(1ms);
    parent.cancel();  // the exit is waiting: this is a new request
    co_await sleep(1ms);
    parent.cancel();  // and another one while the children finish
    try {
      co_await parent;
    } catch (const CancelledError&) {
      trace(std::string("parent cancelled; child done=") + (child.done() ? "True" : "False"));
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "child cleanup finished\nparent cancelled; child done=True\n");
}

TEST(TaskGroup, ResultsAndManyChildren) {
  auto sum = run([]() -> Task<long> {
    std::vector<TaskHandle<int>> handles;
    co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
      for (int i = 0; i < 10000; ++i) handles.push_back(tg.create_task([](int i) -> Task<int> {
        co_await sleep(0);
        co_return i;
      }(i)));
      co_return;
    });
    long s = 0;
    for (auto& h : handles) s += h.result();
    co_return s;
  }());
  EXPECT_EQ(sum, 10000L * 9999 / 2);
}

TEST(ExceptionGroup, SplitAndSubgroupKeepNesting) {
  ExceptionGroup eg("outer", {std::make_exception_ptr(std::invalid_argument("a")),
                              std::make_exception_ptr(ExceptionGroup(
                                  "inner", {std::make_exception_ptr(std::invalid_argument("b")),
                                            std::make_exception_ptr(std::out_of_range("c"))}))});
  auto [match, rest] = eg.split<std::invalid_argument>();
  ASSERT_TRUE(match && rest);
  EXPECT_EQ(match->exceptions().size(), 2u);
  EXPECT_EQ(rest->exceptions().size(), 1u);
  EXPECT_TRUE(ExceptionGroup::holds<ExceptionGroup>(rest->exceptions()[0]));
  EXPECT_FALSE(eg.subgroup<std::bad_alloc>());
  EXPECT_TRUE(eg.contains<std::out_of_range>());
}

// tg_04 / tg_07: Python distinguishes BaseException (KeyboardInterrupt, SystemExit, custom ones),
// which TaskGroup re-raises bare or as a BaseExceptionGroup. C++ has no such hierarchy; the mapping
// is: every failure other than CancelledError — std::exception or not — joins the ExceptionGroup,
// and the group is still raised only after every child has finished.
TEST(TaskGroup, Tg04Tg07NonStandardExceptionsAreGroupedToo) {
  struct SystemExit {
    int code;
  };
  Trace trace;
  run([&]() -> Task<void> {
    try {
      co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
        tg.create_task([&]() -> Task<void> {
          co_await try_finally([]() -> Task<void> { co_await sleep(10s); },
                               [&]() -> Task<void> {
                                 trace("c1 cancelled");
                                 co_return;
                               });
        });
        co_await sleep(0);
        trace("body raising SystemExit");
        throw SystemExit{3};
      });
    } catch (const ExceptionGroup& eg) {
      try {
        std::rethrow_exception(eg.exceptions().at(0));
      } catch (const SystemExit& e) {
        trace("caught SystemExit code=" + std::to_string(e.code) + " (grouped)");
      }
    }
  }(), test::virtual_time());
  EXPECT_EQ(trace.str(), "body raising SystemExit\nc1 cancelled\ncaught SystemExit code=3 (grouped)\n");
}
