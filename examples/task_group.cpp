// asyncio.TaskGroup: structured concurrency. Every child is done when the block ends; the first
// failure cancels the siblings and the body, and the failures come out together.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

awith::Task<std::string> fetch(std::string name, std::chrono::milliseconds delay, bool fail = false) {
  try {
    co_await awith::sleep(delay);
  } catch (const awith::CancelledError&) {
    std::printf("  %s cancelled\n", name.c_str());
    throw;
  }
  if (fail) throw std::runtime_error(name + " failed");
  std::printf("  %s done\n", name.c_str());
  co_return name;
}

awith::Task<void> main_task() {
  std::puts("all succeed:");
  awith::TaskHandle<std::string> a, b;
  co_await awith::async_with(awith::TaskGroup(), [&](awith::TaskGroup& tg) -> awith::Task<void> {
    a = tg.create_task(fetch("a", 20ms));
    b = tg.create_task(fetch("b", 10ms));
    co_return;
  });
  std::printf("  results: %s %s\n", a.result().c_str(), b.result().c_str());

  std::puts("one fails:");
  try {
    co_await awith::async_with(awith::TaskGroup(), [&](awith::TaskGroup& tg) -> awith::Task<void> {
      tg.create_task(fetch("slow", 1s));
      tg.create_task(fetch("broken", 10ms, true));
      co_await awith::sleep(1s);
    });
  } catch (const awith::ExceptionGroup& eg) {
    auto rest = awith::except_star<std::runtime_error>(
        eg, [](const std::runtime_error& e) { std::printf("  handled: %s\n", e.what()); });
    std::printf("  unhandled left: %s\n", rest ? "yes" : "none");
  }
}

int main() { awith::run(main_task()); }
