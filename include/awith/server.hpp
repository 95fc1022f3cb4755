// asyncio.start_server / Server: a listening socket whose every accepted connection runs the
// handler as its own task, with asyncio 3.12+'s lifecycle.
// snippet: tests/snippets/headers.cpp#echo_server
//
//   auto server = co_await awith::start_server(
//       [](awith::StreamReader reader, awith::StreamWriter writer) -> awith::Task<void> {
//         for (;;) {
//           std::string line = co_await reader.readline();
//           if (line.empty()) break;  // the client closed its end
//           writer.write(line);
//           co_await writer.drain();
//         }
//       },
//       "127.0.0.1", 8888);
//   co_await awith::async_with(server, [&](awith::Server& s) { return s.serve_forever(); });
//
// Lifecycle: close() stops listening (new connections are refused) but leaves accepted ones alone;
// wait_closed() waits until the server is closed AND every connection has finished (3.12+);
// close_clients() / abort_clients() (3.13) close or abort the connections. Leaving the server as an
// async context manager is close() + wait_closed().
//
// Connections: when the handler returns, its writer is closed (flushing what was written) and the
// connection ends once the socket is closed; a handler's exception is reported through the loop's
// exception handler and only its own connection is closed. The accept loop survives EMFILE/ENFILE
// (it stops accepting for accept_retry_delay, as asyncio does, instead of spinning) and ignores
// ECONNABORTED.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "awith/socket_address.hpp"
#include "awith/stream.hpp"
#include "awith/task.hpp"
#include "awith/tls.hpp"

namespace awith {

using ConnectionHandler = std::function<Task<void>(StreamReader, StreamWriter)>;

// Set the fields by name; the constructor prevents g++ 12's double destruction of an aggregate
// temporary in a co_await expression (see StreamOptions).
struct ServerOptions {
  ServerOptions() = default;
  int backlog = 100;
  bool reuse_address = true;  // SO_REUSEADDR (asyncio's default on Unix)
  bool reuse_port = false;    // SO_REUSEPORT: several servers share the port
  bool start_serving = true;  // false: listen only once start_serving()/serve_forever() is called
  std::size_t limit = kDefaultStreamLimit;  // each connection's reader limit
  std::size_t write_high_water = 64 * 1024;
  std::size_t write_low_water = 16 * 1024;
  // How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM (asyncio: 1 s).
  Duration accept_retry_delay = std::chrono::seconds(1);
  // A server context makes every connection TLS: the handler starts once the handshake is done
  // (a failed or slower handshake just drops that connection), and when it returns the writer's
  // close sends close_notify, within ssl_shutdown_timeout (then the connection is aborted).
  std::optional<SSLContext> ssl;
  Duration ssl_handshake_timeout = std::chrono::seconds(60);
  Duration ssl_shutdown_timeout = std::chrono::seconds(30);
};

// One listening socket (asyncio's Server.sockets entries).
struct ListenSocket {
  int fd;
  SocketAddress sockname;
};

namespace detail {
class ServerState;
}

class Server {
 public:
  Server() = default;
  explicit Server(std::shared_ptr<detail::ServerState> s) noexcept : s_(std::move(s)) {}

  bool is_serving() const noexcept;
  // Starts accepting connections (a no-op when already serving; RuntimeError once closed).
  void start_serving();
  // Serves until the task is cancelled (then closes the server, waits for it, and rethrows) or
  // until close() is called by someone else (then it returns). RuntimeError if already running.
  Task<void> serve_forever();
  // Stops listening; accepted connections keep running.
  void close();
  // Waits until the server is closed and every connection has finished (asyncio 3.12+).
  Task<void> wait_closed();
  // Closes every accepted connection (flushing) / aborts them (dropping unsent data).
  void close_clients();
  void abort_clients();
  // The listening sockets; empty once closed.
  std::vector<ListenSocket> sockets() const;
  // Connections currently handled.
  std::size_t active_connections() const noexcept;

  // The async context manager protocol: the body gets the server; the exit is close() + wait_closed().
  Task<Server&> aenter();
  Task<void> aexit(std::exception_ptr);

 private:
  detail::ServerState& state() const;
  std::shared_ptr<detail::ServerState> s_;
};

// Listens on host:port (host "" = every interface; port 0 = any free port). Names are resolved on
// the default executor.
Task<Server> start_server(ConnectionHandler handler, std::string host, std::uint16_t port,
                          ServerOptions options = {});
// Listens on a Unix-domain socket at path (a stale socket file there is replaced); the file is
// removed when the server closes.
Task<Server> start_unix_server(ConnectionHandler handler, std::string path, ServerOptions options = {});

}  // namespace awith
