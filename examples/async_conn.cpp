// Mirrors the asyncio program whose AsyncConn class implements __aenter__/__aexit__ (a simulated
// connection that takes 0.1 s to open and 0.1 s to close) and is used as
// `async with AsyncConn() as conn`; here the class implements aenter/aexit.
// Prints exactly what the Python program prints: connected / connection state: True /
// connection closed.
#include <cstdio>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

// snippet-begin: async_conn
class AsyncConn {
 public:
  awith::Task<AsyncConn&> aenter() {          // async def __aenter__(self)
    co_await awith::sleep(100ms);
    connected = true;
    std::puts("connected");
    co_return *this;                          // bound to the body's parameter
  }
  awith::Task<bool> aexit(std::exception_ptr) {  // async def __aexit__(self, et, ev, tb)
    co_await awith::sleep(100ms);
    connected = false;
    std::puts("connection closed");
    co_return false;                          // true would suppress the exception
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
// snippet-end: async_conn
