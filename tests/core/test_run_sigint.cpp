// awith::run's Ctrl-C handling (asyncio.run's): real processes and real signals for what ends a
// process, in-process checks for the dispositions and for several runs sharing one SIGINT.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "awith/awith.hpp"
#include "awith/run.hpp"
#include "awith/signals.hpp"

extern char** environ;

using namespace awith;
using namespace std::chrono_literals;

namespace {

// The helper program (run_sigint_child.cpp) with its stdout on a pipe. Every wait is bounded; the
// destructor kills and reaps a child that is still running.
class Child {
 public:
  explicit Child(const char* mode) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    posix_spawn_file_actions_t actions;
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    // The child starts with SIGINT at its default disposition, whatever the test runner has.
    posix_spawnattr_t attr;
    ::posix_spawnattr_init(&attr);
    sigset_t defaults;
    ::sigemptyset(&defaults);
    ::sigaddset(&defaults, SIGINT);
    ::posix_spawnattr_setsigdefault(&attr, &defaults);
    sigset_t none;
    ::sigemptyset(&none);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    char* argv[] = {const_cast<char*>(AWITH_RUN_SIGINT_CHILD), const_cast<char*>(mode), nullptr};
    int rc = ::posix_spawn(&pid_, AWITH_RUN_SIGINT_CHILD, &actions, &attr, argv, environ);
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
    ::close(fds[1]);
    out_fd_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn failed");
    }
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads until the output ends with `line` + "\n" or EOF, at most 10 s. Returns whether it did.
  bool read_until(const std::string& line) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    const std::string want = line + "\n";
    while (!ends_with(want)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= 0ms) return false;
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[256];
      ssize_t n = ::read(out_fd_, buf, sizeof buf);
      if (n <= 0) return ends_with(want);
      output_.append(buf, static_cast<std::size_t>(n));
    }
    return true;
  }
  void interrupt() { ::kill(pid_, SIGINT); }
  // Reads the rest of the output and reaps the child (at most 10 s, then it is killed).
  int wait() {
    read_until("\x01");  // to EOF: the sentinel is never printed
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "the child did not end";
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    pid_ = -1;
    return status;
  }
  const std::string& output() const { return output_; }

 private:
  bool ends_with(const std::string& s) const {
    return output_.size() >= s.size() && output_.compare(output_.size() - s.size(), s.size(), s) == 0;
  }
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string output_;
};

bool killed_by_sigint(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGINT; }
bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

bool sigint_is_default() {
  struct sigaction current {};
  ::sigaction(SIGINT, nullptr, &current);
  return current.sa_handler == SIG_DFL;  // null is the default whatever the flags (TSan keeps SA_SIGINFO)
}

}  // namespace

// The first SIGINT cancels the main task: its async_with exit runs (and may await), then run()
// throws KeyboardInterrupt and main returns 130.
TEST(RunSigint, FirstSigintCancelsMainRunsCleanupAndRaisesKeyboardInterrupt) {
  Child child("cleanup");
  ASSERT_TRUE(child.read_until("ready")) << child.output();
  child.interrupt();
  int status = child.wait();
  EXPECT_EQ(child.output(), "ready\naexit: CancelledError\naexit: done\nKeyboardInterrupt\n");
  EXPECT_TRUE(exited_with(status, 130)) << status;
}

// A body that never waits on anything outside the loop (sleep(0) in a loop) still sees Ctrl-C.
TEST(RunSigint, BusyLoopIsInterruptedToo) {
  Child child("busy");
  ASSERT_TRUE(child.read_until("ready")) << child.output();
  child.interrupt();
  int status = child.wait();
  EXPECT_EQ(child.output(), "ready\naexit: CancelledError\naexit: done\nKeyboardInterrupt\n");
  EXPECT_TRUE(exited_with(status, 130)) << status;
}

// A cleanup that never ends: the second SIGINT kills the process, as Ctrl-C does by default.
TEST(RunSigint, SecondSigintEndsTheProcess) {
  Child child("hang");
  ASSERT_TRUE(child.read_until("ready")) << child.output();
  child.interrupt();
  ASSERT_TRUE(child.read_until("aexit: CancelledError")) << child.output();
  child.interrupt();
  int status = child.wait();
  EXPECT_EQ(child.output(), "ready\naexit: CancelledError\n");
  EXPECT_TRUE(killed_by_sigint(status)) << status;
}

// handle_sigint = false: run() installs nothing; SIGINT kills the process, no cleanup runs.
TEST(RunSigint, OptOutLeavesTheDefaultDisposition) {
  Child child("optout");
  ASSERT_TRUE(child.read_until("ready")) << child.output();
  child.interrupt();
  int status = child.wait();
  EXPECT_EQ(child.output(), "ready\n");
  EXPECT_TRUE(killed_by_sigint(status)) << status;
}

// A handler the program installed before run() wins, and is still there after run().
TEST(RunSigint, HandlerInstalledBeforeRunWins) {
  Child child("own");
  ASSERT_TRUE(child.read_until("ready")) << child.output();
  child.interrupt();
  int status = child.wait();
  EXPECT_EQ(child.output(), "ready\nown handler ran\nown handler kept\nrun returned\n");
  EXPECT_TRUE(exited_with(status, 0)) << status;
}

// An add_signal_handler(SIGINT) callback replaces run()'s handling; the default is back after run().
TEST(RunSigint, AddSignalHandlerForSigintWins) {
  Child child("callback");
  ASSERT_TRUE(child.read_until("ready")) << child.output();
  child.interrupt();
  int status = child.wait();
  EXPECT_EQ(child.output(), "ready\ncallback ran\ndefault disposition restored\nrun returned\n");
  EXPECT_TRUE(exited_with(status, 0)) << status;
}

// run() on the main thread installs a handler for its duration and restores the default after;
// with the opt-out, or on another thread, it installs nothing.
TEST(RunSigint, DispositionDuringAndAfterRun) {
  ASSERT_TRUE(sigint_is_default());
  bool during = true;
  run([&]() -> Task<void> {
    during = sigint_is_default();
    co_return;
  }());
  EXPECT_FALSE(during);
  EXPECT_TRUE(sigint_is_default());

  LoopOptions opt_out;
  opt_out.handle_sigint = false;
  run([&]() -> Task<void> {
    during = sigint_is_default();
    co_return;
  }(), opt_out);
  EXPECT_TRUE(during);

  std::thread other([&] {
    run([&]() -> Task<void> {
      during = sigint_is_default();
      co_return;
    }());
  });
  other.join();
  EXPECT_TRUE(during);
  EXPECT_TRUE(sigint_is_default());
}

// One SIGINT cancels every run() alive in the process: the main thread's (which installed the
// handler) and one on another thread (which installed nothing). Both throw KeyboardInterrupt
// after their cleanup.
TEST(RunSigint, OneSigintInterruptsEveryRun) {
  ASSERT_TRUE(sigint_is_default());
  std::atomic<bool> other_started{false};
  std::atomic<bool> other_interrupted{false};
  std::atomic<bool> other_cleaned{false};
  std::thread other([&] {
    try {
      run([&]() -> Task<void> {
        try {
          other_started = true;
          co_await sleep(10s);
        } catch (const CancelledError&) {
          other_cleaned = true;
          throw;
        }
      }());
    } catch (const KeyboardInterrupt&) {
      other_interrupted = true;
    }
  });
  bool main_cleaned = false;
  bool raised = false;
  EXPECT_THROW(run([&]() -> Task<void> {
                 for (int i = 0; i < 1000 && !other_started; ++i) co_await sleep(5ms);
                 // Raise only with the handler in place: otherwise SIGINT would end the test binary.
                 if (!other_started || sigint_is_default()) co_return;
                 raised = true;
                 ::raise(SIGINT);
                 try {
                   co_await sleep(10s);
                 } catch (const CancelledError&) {
                   main_cleaned = true;
                   throw;
                 }
               }()),
               KeyboardInterrupt);
  other.join();
  EXPECT_TRUE(raised);
  EXPECT_TRUE(main_cleaned);
  EXPECT_TRUE(other_cleaned);
  EXPECT_TRUE(other_interrupted);
  EXPECT_TRUE(sigint_is_default());
}

// A main that handles the cancellation itself (uncancel, then return) keeps its outcome.
TEST(RunSigint, MainThatHandlesTheCancellationReturnsItsValue) {
  ASSERT_TRUE(sigint_is_default());
  int value = run([]() -> Task<int> {
    if (sigint_is_default()) co_return -1;
    ::raise(SIGINT);
    try {
      co_await sleep(10s);
    } catch (const CancelledError&) {
      current_task().uncancel();
      co_return 7;
    }
    co_return 0;
  }());
  EXPECT_EQ(value, 7);
  EXPECT_TRUE(sigint_is_default());
}
