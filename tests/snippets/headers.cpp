// The examples in the comments of awith's core and io headers, compiled (scripts/snippets.py
// checks that each header shows exactly the code between its markers here).
#include <any>
#include <stdexcept>
#include <string>
#include <vector>

#include "awith/awith.hpp"

using namespace std::chrono_literals;

namespace borrowing_task_example {
using namespace awith;

Task<void> wait_with_bound(Queue<int>& q) {
  // snippet-begin: wait_for_borrowed
  co_await wait_for(q.get(), 1s);          // fine: q.get() lives until the await has finished
  // snippet-end: wait_for_borrowed
}

}  // namespace borrowing_task_example

namespace cancel_scope_example {
using namespace awith;

Task<void> flush() { co_return; }

Task<void> aexit_part() {
  // snippet-begin: shielded
  co_await async_with(CancelScope::shielded(2s), [&]() -> Task<void> { co_await flush(); });
  // snippet-end: shielded
}

}  // namespace cancel_scope_example

namespace dns_example {
using awith::SocketAddress;

awith::Task<void> lookup() {
  // snippet-begin: resolve
  std::vector<SocketAddress> addresses = co_await awith::resolve("example.org", 443);
  // snippet-end: resolve
}

}  // namespace dns_example

namespace generator_manager_example {
using namespace awith;

struct Session {
  Task<void> close() { co_return; }
};
Task<Session> connect() { co_return Session{}; }

// snippet-begin: open_session
AsyncContextManager<Session> open_session() {
  Session s = co_await connect();     // setup (runs at aenter)
  std::exception_ptr error;
  try {
    co_yield s;                       // the body runs here; its exception is rethrown here
  } catch (...) {                     // keep it (here), translate it, or drop it (= suppress)
    error = std::current_exception();
  }
  co_await s.close();                 // cleanup (runs at aexit, inside a cleanup scope)
  if (error) std::rethrow_exception(error);
}
// snippet-end: open_session

}  // namespace generator_manager_example

namespace run_example {

awith::Task<int> amain() { co_return 0; }

// snippet-begin: keyboard_interrupt
int main() {
  try {
    return awith::run(amain());
  } catch (const awith::KeyboardInterrupt&) {
    return awith::KeyboardInterrupt::exit_status;  // 130, what a shell reports for Ctrl-C
  }
}
// snippet-end: keyboard_interrupt

}  // namespace run_example

namespace server_example {

awith::Task<void> serve() {
  // snippet-begin: echo_server
  auto server = co_await awith::start_server(
      [](awith::StreamReader reader, awith::StreamWriter writer) -> awith::Task<void> {
        for (;;) {
          std::string line = co_await reader.readline();
          if (line.empty()) break;  // the client closed its end
          writer.write(line);
          co_await writer.drain();
        }
      },
      "127.0.0.1", 8888);
  co_await awith::async_with(server, [&](awith::Server& s) { return s.serve_forever(); });
  // snippet-end: echo_server
}

}  // namespace server_example

namespace stream_example {

awith::Task<void> get() {
  // snippet-begin: open_connection
  auto [reader, writer] = co_await awith::open_connection("example.org", 80);
  writer.write("GET / HTTP/1.0\r\n\r\n");
  co_await writer.drain();
  std::string status = co_await reader.readline();
  writer.close();
  co_await writer.wait_closed();
  // snippet-end: open_connection
}

}  // namespace stream_example

namespace task_group_example {
using namespace awith;

Task<int> fetch(int n) { co_return n; }

Task<void> both() {
  // snippet-begin: task_group
  co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
    auto a = tg.create_task(fetch(1));
    tg.create_task(fetch(2));
    co_return;
  });  // both are done here, or the failures are raised as an ExceptionGroup
  // snippet-end: task_group
}

}  // namespace task_group_example

namespace tls_example {

awith::Task<void> connect() {
  // snippet-begin: tls_client
  awith::StreamOptions options;
  options.ssl = awith::create_default_context();  // verifies the server, checks its name
  options.ssl->set_alpn_protocols({"h2", "http/1.1"});
  auto [reader, writer] = co_await awith::open_connection("example.org", 443, options);
  auto ssl = std::any_cast<awith::SSLObject>(writer.get_extra_info("ssl_object"));
  // snippet-end: tls_client
}

}  // namespace tls_example
