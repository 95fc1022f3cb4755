// Signals: add_signal_handler runs the callback as loop code (not in the C handler), replaces and
// removes callbacks, and restores the previous disposition on removal and at loop shutdown.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <stdexcept>

#include "awith/awith.hpp"
#include "awith/signals.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

std::atomic<int> previous_calls{0};
extern "C" void previous_handler(int) { previous_calls.fetch_add(1); }

// Installs previous_handler for SIGUSR1 for the test's lifetime, then restores the default.
struct PreviousDisposition {
  PreviousDisposition() {
    struct sigaction sa {};
    sa.sa_handler = &previous_handler;
    ::sigemptyset(&sa.sa_mask);
    ::sigaction(SIGUSR1, &sa, nullptr);
    previous_calls = 0;
  }
  ~PreviousDisposition() { ::signal(SIGUSR1, SIG_DFL); }
};

bool disposition_is_previous() {
  struct sigaction current {};
  ::sigaction(SIGUSR1, nullptr, &current);
  return current.sa_handler == &previous_handler;
}

// Waits for the event, bounded: a lost signal fails the test with TimeoutError instead of hanging.
Task<void> wait_set(Event& event) {
  co_await async_with(timeout(5s), [&]() -> Task<void> { co_await event.wait(); });
}

}  // namespace

TEST(Signals, CallbackRunsOnTheLoopAndPreviousHandlerIsRestored) {
  PreviousDisposition previous;
  run([&]() -> Task<void> {
    EventLoop* loop = &EventLoop::running();
    Event delivered;
    int calls = 0;
    bool on_loop = false;
    add_signal_handler(SIGUSR1, [&] {
      ++calls;
      on_loop = EventLoop::current() == loop && loop->is_running();
      delivered.set();
    });
    EXPECT_FALSE(disposition_is_previous());
    ::raise(SIGUSR1);
    EXPECT_EQ(calls, 0);  // the C handler only wrote to the pipe
    co_await wait_set(delivered);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(on_loop);
    EXPECT_EQ(previous_calls.load(), 0);

    // A second add replaces the callback.
    delivered.clear();
    int replaced_calls = 0;
    add_signal_handler(SIGUSR1, [&] {
      ++replaced_calls;
      delivered.set();
    });
    ::raise(SIGUSR1);
    co_await wait_set(delivered);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(replaced_calls, 1);

    // Removal restores the disposition that was there before the first add.
    EXPECT_TRUE(remove_signal_handler(SIGUSR1));
    EXPECT_FALSE(remove_signal_handler(SIGUSR1));
    EXPECT_TRUE(disposition_is_previous());
    ::raise(SIGUSR1);
    EXPECT_EQ(previous_calls.load(), 1);
    co_await sleep(10ms);
    EXPECT_EQ(replaced_calls, 1);
  }());
}

// A handler still installed when the loop ends is removed with it: the previous disposition is back.
TEST(Signals, LoopShutdownRestoresPreviousHandler) {
  PreviousDisposition previous;
  run([&]() -> Task<void> {
    Event delivered;
    add_signal_handler(SIGUSR1, [&] { delivered.set(); });
    ::raise(SIGUSR1);
    co_await wait_set(delivered);
  }());
  EXPECT_TRUE(disposition_is_previous());
  ::raise(SIGUSR1);
  EXPECT_EQ(previous_calls.load(), 1);
}

// A throwing callback is reported through the loop's exception handler; the next signal still
// reaches it.
TEST(Signals, CallbackExceptionIsReported) {
  PreviousDisposition previous;
  run([&]() -> Task<void> {
    std::vector<std::string> reports;
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.describe()); });
    int calls = 0;
    add_signal_handler(SIGUSR1, [&] {
      ++calls;
      throw std::runtime_error("boom");
    });
    for (int i = 0; i < 2; ++i) {
      ::raise(SIGUSR1);
      for (int spin = 0; spin < 100 && calls == i; ++spin) co_await sleep(5ms);
    }
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(reports.size(), 2u);
    if (!reports.empty()) {
      EXPECT_NE(reports[0].find("boom"), std::string::npos) << reports[0];
    }
  }());
}

TEST(Signals, InvalidSignalsAreRejected) {
  run([&]() -> Task<void> {
    EXPECT_THROW(add_signal_handler(SIGKILL, [] {}), std::invalid_argument);
    EXPECT_THROW(add_signal_handler(SIGSTOP, [] {}), std::invalid_argument);
    EXPECT_THROW(add_signal_handler(0, [] {}), std::invalid_argument);
    EXPECT_THROW(add_signal_handler(NSIG, [] {}), std::invalid_argument);
    EXPECT_FALSE(remove_signal_handler(SIGUSR2));
    co_return;
  }());
}
