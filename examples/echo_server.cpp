// Mirrors asyncio's start_server echo server (handle_echo reads a line, prints it, writes it back,
// drains and closes; main serves forever), in awith.
//
//   echo_server [PORT]          one line per connection (readline, write, drain, close,
//                               wait_closed); port 8888 by default
//   echo_server --bench PORT    echoes every byte until the peer closes (the awith server that
//                               the peer harness's echo benchmark drives)
//
// Graceful shutdown on SIGINT/SIGTERM (the documented pattern): the signal handler closes the
// server, so no new connection is accepted and serve_forever returns; leaving async_with waits
// for the handlers in flight (wait_closed); if they are not done within the grace period, the
// remaining connections are aborted. In --bench mode the grace period is zero.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <signal.h>
#include <string>
#include <string_view>

#include "awith/awith.hpp"
#include "awith/context.hpp"
#include "awith/server.hpp"
#include "awith/signals.hpp"
#include "awith/stream.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

Task<void> handle_echo(StreamReader reader, StreamWriter writer) {
  std::string data = co_await reader.readline();
  std::string_view line(data);
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);  // print the line, not its newline
  std::printf("Received %.*s from %s\n", static_cast<int>(line.size()), line.data(),
              writer.peername().to_string().c_str());
  writer.write(data);
  co_await writer.drain();
  std::printf("Close the connection\n");
  std::fflush(stdout);
  writer.close();
  co_await writer.wait_closed();
}

// Echoes every byte. One 64 KiB buffer per connection, no allocation per message: the read lands
// in the buffer, write() sends straight from it and copies only what the socket does not take.
Task<void> echo_everything(StreamReader reader, StreamWriter writer) {
  constexpr std::size_t kBuffer = 64 * 1024;
  auto buf = std::make_unique<char[]>(kBuffer);
  try {
    for (;;) {
      std::size_t n = co_await reader.read_into({buf.get(), kBuffer});
      if (n == 0) break;
      writer.write({buf.get(), n});
      co_await writer.drain();
    }
  } catch (const ConnectionError&) {
    // The load generator resets its connections when it stops: nothing to report.
  }
}

Task<int> serve(std::uint16_t port, bool bench) {
  auto server = co_await start_server(bench ? ConnectionHandler(echo_everything) : ConnectionHandler(handle_echo),
                                      "127.0.0.1", port);
  std::string addrs;
  for (const auto& s : server.sockets()) addrs += (addrs.empty() ? "" : ", ") + s.sockname.to_string();
  std::printf("Serving on %s\n", addrs.c_str());
  std::fflush(stdout);

  const Duration grace = bench ? Duration::zero() : Duration(5s);
  Handle abort_timer;
  auto stop = [&] {
    if (!server.is_serving()) return;
    std::printf("Shutting down\n");
    std::fflush(stdout);
    server.close();  // serve_forever returns; the handlers in flight go on
    abort_timer = EventLoop::running().call_later(grace, [&] { server.abort_clients(); });
  };
  add_signal_handler(SIGINT, stop);
  add_signal_handler(SIGTERM, stop);

  co_await async_with(server, [](Server& s) { return s.serve_forever(); });
  abort_timer.cancel();
  remove_signal_handler(SIGINT);
  remove_signal_handler(SIGTERM);
  std::printf("Server closed\n");
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool bench = argc > 1 && std::strcmp(argv[1], "--bench") == 0;
  const char* port_arg = bench ? (argc > 2 ? argv[2] : nullptr) : (argc > 1 ? argv[1] : "8888");
  if (!port_arg) {
    std::fprintf(stderr, "usage: %s [PORT] | --bench PORT\n", argv[0]);
    return 2;
  }
  char* end = nullptr;
  long port = std::strtol(port_arg, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) {
    std::fprintf(stderr, "echo_server: bad port '%s'\n", port_arg);
    return 2;
  }
  try {
    return run(serve(static_cast<std::uint16_t>(port), bench));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
