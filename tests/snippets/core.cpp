// The C++ examples of README.md, docs/ and the core headers' comments, compiled: each sits
// between snippet-begin/snippet-end markers, and scripts/snippets.py checks that the documents
// show exactly this code. The functions are compiled, not run; the declarations above each
// example stand for what the surrounding prose assumes.
#include <cstdio>
#include <string>
#include <vector>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

namespace readme {

struct Resource {
  awith::Task<void> close() { co_return; }
};
awith::Task<Resource> open(std::string) { co_return Resource{}; }

// snippet-begin: open_resource
awith::AsyncContextManager<Resource> open_resource(std::string name) {
  Resource resource = co_await open(name);   // setup: runs when entered
  std::exception_ptr error;
  try {
    co_yield resource;                        // the body runs here; its exception is rethrown here
  } catch (...) {
    error = std::current_exception();         // co_await is not allowed in a catch block:
  }                                           // capture, clean up asynchronously, rethrow
  co_await resource.close();
  if (error) std::rethrow_exception(error);
}
// snippet-end: open_resource

awith::Task<void> fetch(std::string) { co_return; }

awith::Task<void> timeout_and_group() {
  // snippet-begin: timeout_and_group
  co_await awith::async_with(awith::timeout(2s), [&](awith::Timeout&) -> awith::Task<void> {
    co_await awith::async_with(awith::TaskGroup(), [&](awith::TaskGroup& tg) -> awith::Task<void> {
      tg.create_task(fetch("a"));
      tg.create_task(fetch("b"));
      co_return;
    });  // both children are done here; failures come out together as an ExceptionGroup
  });    // TimeoutError if the whole thing took longer than 2 s
  // snippet-end: timeout_and_group
}

struct Connection {
  awith::Task<void> send_goodbye() { co_return; }
  void close_socket() {}
  // snippet-begin: shielded_aexit
  awith::Task<void> aexit(std::exception_ptr) {
    co_await awith::async_with(awith::CancelScope::shielded(100ms), [&](awith::CancelScope&) -> awith::Task<void> {
      co_await send_goodbye();   // runs even while the task is being cancelled, at most 100 ms
    });
    close_socket();
  }
  // snippet-end: shielded_aexit
};

}  // namespace readme

namespace design {
using namespace awith;

struct Connection {
  Task<void> send_goodbye() { co_return; }
  Task<void> flush() { co_return; }
  void close_socket() {}
  // snippet-begin: shielded_cleanup
  Task<void> aexit(std::exception_ptr) {
    co_await async_with(CancelScope::shielded(2s), [&](CancelScope&) -> Task<void> {
      co_await send_goodbye();       // runs even while the task is being cancelled, even if a new
      co_await flush();              // cancel arrives, but never longer than 2 s
    });
    close_socket();                  // the synchronous part always runs
  }
  // snippet-end: shielded_cleanup
};

void process(int) {}
void crunch(int) {}

Task<void> consume(Queue<int>& q) {
  // snippet-begin: timeout_consumer
  co_await awith::async_with(awith::timeout(10ms), [&](awith::Timeout&) -> awith::Task<void> {
    for (;;) process(co_await q.get());  // yields once every 128 gets: TimeoutError on time
  });
  // snippet-end: timeout_consumer
}

Task<void> crunch_all(std::vector<int>& rows) {
  // snippet-begin: checkpoint_loop
  for (auto& row : rows) {
    crunch(row);
    co_await awith::checkpoint();  // raises CancelledError if cancelled; yields once the budget is spent
  }
  // snippet-end: checkpoint_loop
}

}  // namespace design
