// asyncio.timeout / wait_for, and the awith way to write cleanup that takes timeouts and
// cancellation into account: a shielded cleanup scope with its own deadline.
#include <cstdio>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

// A connection whose close() says goodbye to the peer: that takes time, so it must run even while
// the task is being cancelled — but never for longer than a bound.
struct Connection {
  std::chrono::milliseconds goodbye_takes;

  awith::Ready<Connection&> aenter() { return {*this}; }
  awith::Task<void> aexit(std::exception_ptr) {
    co_await awith::async_with(awith::CancelScope::shielded(100ms), [&](awith::CancelScope& scope) -> awith::Task<void> {
      co_await awith::try_finally([&]() -> awith::Task<void> {
        co_await awith::sleep(goodbye_takes);
        std::puts("  goodbye sent");
      }, [&]() -> awith::Task<void> {
        if (scope.cancel_called()) std::puts("  goodbye abandoned after 100 ms");
        co_return;
      });
    });
    std::puts("  socket closed");
  }
};

awith::Task<int> slow_answer() {
  co_await awith::sleep(500ms);
  co_return 42;
}

awith::Task<void> main_task() {
  std::puts("timeout(50ms) around a 1 s wait:");
  try {
    co_await awith::async_with(awith::timeout(50ms), [](awith::Timeout&) -> awith::Task<void> { co_await awith::sleep(1s); });
  } catch (const awith::TimeoutError&) {
    std::puts("  TimeoutError");
  }

  std::puts("wait_for(slow_answer(), 1 s):");
  std::printf("  %d\n", co_await awith::wait_for(slow_answer(), 1s));

  std::puts("a timeout hits the body; the graceful close still runs (20 ms):");
  try {
    co_await awith::async_with(awith::timeout(50ms), [](awith::Timeout&) -> awith::Task<void> {
      co_await awith::async_with(Connection{20ms}, [](Connection&) -> awith::Task<void> { co_await awith::sleep(1s); });
    });
  } catch (const awith::TimeoutError&) {
    std::puts("  TimeoutError after the close");
  }

  std::puts("a stuck goodbye (10 s) is bounded by the cleanup scope:");
  try {
    co_await awith::async_with(awith::timeout(50ms), [](awith::Timeout&) -> awith::Task<void> {
      co_await awith::async_with(Connection{10s}, [](Connection&) -> awith::Task<void> { co_await awith::sleep(1s); });
    });
  } catch (const awith::TimeoutError&) {
    std::puts("  TimeoutError after the bounded close");
  }
}

int main() { awith::run(main_task()); }
