// A program for test_run_sigint: its main task prints "ready" inside an async_with and waits; the
// test sends it SIGINT and checks what it prints and how it ends. The first argument picks the
// scenario:
//   cleanup   the exit awaits, then run() throws KeyboardInterrupt and main returns 130
//   busy      the same while the body never waits (sleep(0) in a loop, no fd watched)
//   hang      the exit never ends: the second SIGINT kills the process
//   optout    LoopOptions::handle_sigint = false: SIGINT kills the process at once
//   own       a SIGINT handler installed before run() wins; run() leaves it in place
//   callback  an add_signal_handler(SIGINT) callback wins over run()'s handling
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>

#include "awith/awith.hpp"
#include "awith/run.hpp"
#include "awith/signals.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string exception_name(const std::exception_ptr& e) {
  if (!e) return "None";
  try {
    std::rethrow_exception(e);
  } catch (const CancelledError&) {
    return "CancelledError";
  } catch (...) {
    return "other";
  }
}

// Prints which exception reached its exit; the exit awaits (cleanup may), or never ends.
class Resource {
 public:
  explicit Resource(bool hang) : hang_(hang) {}
  Ready<> aenter() { return {}; }
  Task<void> aexit(std::exception_ptr error) {
    say("aexit: " + exception_name(error));
    co_await sleep(hang_ ? Duration(std::chrono::hours(1)) : Duration(10ms));
    say("aexit: done");
  }

 private:
  bool hang_;
};

Task<void> wait_in_resource(bool hang, bool busy) {
  co_await async_with(Resource(hang), [busy]() -> Task<void> {
    say("ready");
    if (busy) {
      for (long i = 0; i < 2'000'000'000L; ++i) co_await sleep(0);
    } else {
      co_await sleep(30s);
    }
    say("not interrupted");
  });
}

std::atomic<bool> own_handler_ran{false};
extern "C" void own_handler(int) { own_handler_ran = true; }

bool sigint_is(void (*handler)(int)) {
  struct sigaction current {};
  ::sigaction(SIGINT, nullptr, &current);
  return current.sa_handler == handler;
}

// Waits (bounded) for a flag set from outside the loop.
Task<void> wait_for_flag(const std::atomic<bool>& flag) {
  for (int i = 0; i < 1000 && !flag; ++i) co_await sleep(5ms);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mode == "cleanup" || mode == "busy" || mode == "hang") {
      run(wait_in_resource(mode == "hang", mode == "busy"));
    } else if (mode == "optout") {
      LoopOptions options;
      options.handle_sigint = false;
      run(wait_in_resource(false, false), options);
    } else if (mode == "own") {
      struct sigaction sa {};
      sa.sa_handler = &own_handler;
      ::sigemptyset(&sa.sa_mask);
      ::sigaction(SIGINT, &sa, nullptr);
      run([]() -> Task<void> {
        say("ready");
        co_await wait_for_flag(own_handler_ran);
        say(own_handler_ran ? "own handler ran" : "own handler did not run");
      }());
      say(sigint_is(&own_handler) ? "own handler kept" : "own handler replaced");
    } else if (mode == "callback") {
      run([]() -> Task<void> {
        std::atomic<bool> called{false};
        add_signal_handler(SIGINT, [&] { called = true; });
        say("ready");
        co_await wait_for_flag(called);
        say(called ? "callback ran" : "callback did not run");
      }());
      say(sigint_is(SIG_DFL) ? "default disposition restored" : "disposition not restored");
    } else {
      std::fprintf(stderr, "usage: %s cleanup|busy|hang|optout|own|callback\n", argv[0]);
      return 2;
    }
    say("run returned");
    return 0;
  } catch (const KeyboardInterrupt& e) {
    say(e.what());
    return KeyboardInterrupt::exit_status;
  }
}
