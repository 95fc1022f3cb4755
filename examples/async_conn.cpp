// Mirrors the asyncio program whose AsyncConn class implements __aenter__/__aexit__ (a simulated
// connection that takes 0.1 s to open and 0.1 s to close) and is used as
// `async with AsyncConn() as conn`; here the class implements aenter/aexit.
// Prints exactly what the Python program prints: connected / connection state: True /
// connection closed.
#include <cstdio>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

class AsyncConn {
 public:
  // Initialise the resource asynchronously; the returned reference is bound to the body.
  awith::Task<AsyncConn&> aenter() {
    co_await awith::sleep(100ms);
    connected = true;
    std::puts("connected");
    co_return *this;
  }
  // Clean up whether or not an exception happened; returning false lets it propagate.
  awith::Task<bool> aexit(std::exception_ptr) {
    co_await awith::sleep(100ms);
    connected = false;
    std::puts("connection closed");
    co_return false;
  }

  bool connected = false;
};

awith::Task<void> main_task() {
  co_await awith::async_with(AsyncConn(), [](AsyncConn& conn) -> awith::Task<void> {
    std::printf("connection state: %s\n", conn.connected ? "True" : "False");
    co_return;
  });
}

int main() { awith::run(main_task()); }
