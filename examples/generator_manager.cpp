// A generator-based manager (Python's @asynccontextmanager) around a resource with async cleanup:
// the body's exception is rethrown at co_yield, where the generator can let it pass, translate it
// or swallow it (= suppress). C++ cannot co_await in a catch block, so the cleanup captures the
// exception, awaits, then rethrows: the pattern every awith generator manager uses.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

struct Resource {
  std::string name;
  int uses = 0;
};

// Opens a resource, hands it to the body, closes it asynchronously whatever happened.
awith::AsyncContextManager<Resource> open_resource(std::string name, bool swallow_errors) {
  co_await awith::sleep(10ms);
  Resource resource{name};
  std::printf("[%s] opened\n", name.c_str());
  std::exception_ptr error;
  try {
    co_yield resource;
  } catch (const std::runtime_error& e) {
    std::printf("[%s] body failed: %s\n", name.c_str(), e.what());
    if (!swallow_errors) error = std::current_exception();
  } catch (...) {  // anything else, CancelledError included, passes through after the cleanup
    error = std::current_exception();
  }
  co_await awith::sleep(10ms);  // async cleanup: flush, say goodbye, close
  std::printf("[%s] closed after %d use(s)\n", name.c_str(), resource.uses);
  if (error) std::rethrow_exception(error);
}

awith::Task<void> use(Resource& r, bool fail) {
  ++r.uses;
  co_await awith::sleep(5ms);
  if (fail) throw std::runtime_error("disk full");
}

awith::Task<void> main_task() {
  co_await awith::async_with(open_resource("ok", false), [](Resource& r) { return use(r, false); });

  try {
    co_await awith::async_with(open_resource("passes-through", false), [](Resource& r) { return use(r, true); });
  } catch (const std::runtime_error& e) {
    std::printf("caller caught: %s\n", e.what());
  }

  auto result = co_await awith::async_with(open_resource("suppressing", true), [](Resource& r) -> awith::Task<int> {
    co_await use(r, true);
    co_return 1;
  });
  std::printf("suppressed: body result %s, execution continues\n", result ? "present" : "absent");

  auto worker = awith::create_task([]() -> awith::Task<void> {
    co_await awith::async_with(open_resource("cancelled", false), [](Resource&) -> awith::Task<void> {
      co_await awith::sleep(1h);
    });
  });
  co_await awith::sleep(50ms);
  worker.cancel();
  try {
    co_await worker;
  } catch (const awith::CancelledError&) {
    std::puts("worker cancelled; its resource was closed first");
  }
}

int main() { awith::run(main_task()); }
