// Servers: the asyncio scenarios st_01, st_02 and st_07 as traces; real peers (Python's asyncio
// client, socat, nc); faults (handler exceptions, resets, EMFILE); 1,000 connections; graceful
// shutdown with requests in flight.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <dirent.h>

#include <system_error>

#include "awith/awith.hpp"
#include "awith/server.hpp"
#include "awith/stream.hpp"
#include "io/io_support.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::pyrepr;
using test::run_command;
using test::Trace;

namespace {
std::uint16_t port_of(const Server& s) { return s.sockets().at(0).sockname.port(); }
std::string yes_no(bool b) { return b ? "True" : "False"; }

Task<std::string> try_connect(std::uint16_t port) {
  try {
    auto [r, w] = co_await open_connection("127.0.0.1", port);
    w.close();
    co_return "new connection accepted (unexpected)";
  } catch (const ConnectionRefusedError&) {
    co_return "new connection -> ConnectionRefusedError";
  }
}

// A line-echo handler that prefixes "echo:" (the scenarios' handler).
ConnectionHandler echo_lines(int* handlers_done = nullptr) {
  return [handlers_done](StreamReader r, StreamWriter w) -> Task<void> {
    for (;;) {
      std::string line = co_await r.readline();
      if (line.empty()) break;
      w.write("echo:" + line);
      co_await w.drain();
    }
    w.close();
    co_await w.wait_closed();
    if (handlers_done) ++*handlers_done;
  };
}
}  // namespace

// st_01: leaving `async with server` closes it; close() refuses new connections but keeps
// accepted ones working.
TEST(Server, St01AsyncWithCloses) {
  Trace trace;
  run([&]() -> Task<void> {
    int handlers_done = 0;
    auto server = co_await start_server(echo_lines(&handlers_done), "127.0.0.1", 0);
    auto port = port_of(server);
    co_await async_with(server, [&](Server& s) -> Task<void> {
      trace("inside: is_serving=" + yes_no(s.is_serving()));
      auto [r, w] = co_await open_connection("127.0.0.1", port);
      w.write("one\n");
      trace("reply: " + pyrepr(co_await r.readline()));
      s.close();
      trace("after server.close(): is_serving=" + yes_no(s.is_serving()));
      trace(co_await try_connect(port));
      w.write("two\n");
      trace("existing connection still works: " + pyrepr(co_await r.readline()));
      w.close();
      co_await w.wait_closed();
      for (int i = 0; i < 5000 && handlers_done < 1; ++i) co_await sleep(1ms);
      trace("client closed, handler finished");
    });
    trace("after block: is_serving=" + yes_no(server.is_serving()));
    std::string after = co_await try_connect(port);
    trace(after.replace(0, 0, "after block: "));
  }());
  EXPECT_EQ(trace.str(),
            "inside: is_serving=True\nreply: b'echo:one\\n'\nafter server.close(): is_serving=False\n"
            "new connection -> ConnectionRefusedError\nexisting connection still works: b'echo:two\\n'\n"
            "client closed, handler finished\nafter block: is_serving=False\n"
            "after block: new connection -> ConnectionRefusedError\n");
}

// st_02: serve_forever runs until cancelled, then closes the server; a second concurrent
// serve_forever raises RuntimeError.
TEST(Server, St02ServeForeverCancel) {
  Trace trace;
  run([&]() -> Task<void> {
    ServerOptions options;
    options.start_serving = false;
    auto server = co_await start_server(
        [](StreamReader, StreamWriter w) -> Task<void> {
          w.close();
          co_return;
        },
        "127.0.0.1", 0, options);
    trace("start_serving=False: is_serving=" + yes_no(server.is_serving()));
    auto t = create_task(server.serve_forever());
    co_await sleep(0);
    trace("serve_forever running: is_serving=" + yes_no(server.is_serving()));
    try {
      co_await server.serve_forever();
    } catch (const RuntimeError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("is already being awaited on serve_forever()"), std::string::npos) << what;
      trace("second serve_forever -> RuntimeError: ... is already being awaited on serve_forever()");
    }
    t.cancel();
    try {
      co_await t;
    } catch (const CancelledError&) {
      auto socks = server.sockets();
      bool closed = socks.empty();
      trace("serve_forever cancelled; is_serving=" + yes_no(server.is_serving()) + " sockets_closed=" + yes_no(closed));
    }
  }());
  EXPECT_EQ(trace.str(),
            "start_serving=False: is_serving=False\nserve_forever running: is_serving=True\n"
            "second serve_forever -> RuntimeError: ... is already being awaited on serve_forever()\n"
            "serve_forever cancelled; is_serving=False sockets_closed=True\n");
}

// st_07 (wait_closed() after close() while a client connection is still open) with asyncio 3.12+
// semantics, the ones awith follows: wait_closed() waits for the open connection, so the first
// line is the 3.12 one ("blocked"), where the 3.11 trace says "returned".
TEST(Server, St07WaitClosedWaitsForOpenConnections) {
  Trace trace;
  run([&]() -> Task<void> {
    bool release = false;
    auto server = co_await start_server(
        [&](StreamReader, StreamWriter w) -> Task<void> {
          while (!release) co_await sleep(1ms);
          w.close();
          co_await w.wait_closed();
        },
        "127.0.0.1", 0);
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
    co_await sleep(10ms);
    server.close();
    auto waiter = create_task(server.wait_closed());
    co_await sleep(50ms);
    trace(waiter.done() ? "wait_closed returned while a connection is still open"
                        : "wait_closed blocked while a connection is still open");
    release = true;
    trace("client sees EOF: " + pyrepr(co_await r.read()));
    w.close();
    co_await w.wait_closed();
    for (int i = 0; i < 1000 && !waiter.done(); ++i) co_await sleep(1ms);
    if (waiter.done()) trace("wait_closed returns once connections are gone");
    co_await waiter;
  }());
  EXPECT_EQ(trace.str(),
            "wait_closed blocked while a connection is still open\nclient sees EOF: b''\n"
            "wait_closed returns once connections are gone\n");
}

// The server driven by Python's own asyncio streams client.
TEST(Server, ServesPythonAsyncioClient) {
  run([&]() -> Task<void> {
    auto server = co_await start_server(echo_lines(), "127.0.0.1", 0);
    std::string script =
        "import asyncio,sys\n"
        "async def main(port):\n"
        "  r,w=await asyncio.open_connection(\"127.0.0.1\",port)\n"
        "  for i in range(100): w.write(b\"line %d\\n\" % i)\n"
        "  await w.drain()\n"
        "  got=[await r.readline() for i in range(100)]\n"
        "  w.close(); await w.wait_closed()\n"
        "  print(\"ok\" if got==[b\"echo:line %d\\n\" % i for i in range(100)] else got)\n"
        "asyncio.run(asyncio.wait_for(main(int(sys.argv[1])),10))\n";
    auto out = co_await run_command("timeout 15 /usr/bin/python3 -c '" + script + "' " +
                                    std::to_string(port_of(server)) + " 2>&1");
    EXPECT_EQ(out, "ok\n");
    server.close();
    co_await server.wait_closed();
  }());
}

TEST(Server, ServesSocatAndNc) {
  run([&]() -> Task<void> {
    auto server = co_await start_server(echo_lines(), "127.0.0.1", 0);
    auto port = std::to_string(port_of(server));
    auto socat = co_await run_command("printf 'a\\nbb\\n' | timeout 10 socat -t 5 - TCP:127.0.0.1:" + port);
    EXPECT_EQ(socat, "echo:a\necho:bb\n");
    auto nc = co_await run_command("printf 'x\\n' | timeout 10 nc -q 5 127.0.0.1 " + port);
    EXPECT_EQ(nc, "echo:x\n");
    server.close();
    co_await server.wait_closed();
  }());
}

// A handler's exception is reported via the loop's exception handler, closes only its connection.
TEST(Server, HandlerExceptionIsReportedAndIsolated) {
  run([&]() -> Task<void> {
    std::vector<std::string> reports;
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) { reports.push_back(c.describe()); });
    auto server = co_await start_server(
        [](StreamReader r, StreamWriter w) -> Task<void> {
          std::string line = co_await r.readline();
          if (line == "boom\n") throw std::runtime_error("handler failed");
          w.write("ok:" + line);
          co_await w.drain();
          w.write("ok:" + co_await r.readline());
        },
        "127.0.0.1", 0);
    auto good = co_await open_connection("127.0.0.1", port_of(server));
    auto bad = co_await open_connection("127.0.0.1", port_of(server));
    good.writer.write("1\n");
    EXPECT_EQ(co_await good.reader.readline(), "ok:1\n");
    bad.writer.write("boom\n");
    EXPECT_EQ(co_await bad.reader.read(), "");  // closed by the server
    good.writer.write("2\n");
    EXPECT_EQ(co_await good.reader.readline(), "ok:2\n");
    EXPECT_EQ(reports.size(), 1u);
    if (!reports.empty()) {
      EXPECT_NE(reports[0].find("handler failed"), std::string::npos) << reports[0];
    }
    good.writer.close();
    bad.writer.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// A peer that resets the connection in the middle of a line: the handler sees a ConnectionError
// or the partial line then EOF; the server keeps serving others.
TEST(Server, PeerResetMidLine) {
  run([&]() -> Task<void> {
    std::string outcome;
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          try {
            std::string line = co_await r.readline();
            if (line == "ping\n") {
              w.write("pong\n");
              co_return;
            }
            outcome = "line " + pyrepr(line);
          } catch (const ConnectionResetError&) {
            outcome = "ConnectionResetError";
          }
        },
        "127.0.0.1", 0);
    {
      auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
      w.write("half a li");
      co_await sleep(20ms);
      linger lg{1, 0};  // close with RST
      ::setsockopt(std::any_cast<int>(w.get_extra_info("socket")), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      w.abort();
    }
    for (int i = 0; i < 2000 && outcome.empty(); ++i) co_await sleep(1ms);
    EXPECT_TRUE(outcome == "ConnectionResetError" || outcome == "line b'half a li'") << outcome;
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
    w.write("ping\n");
    EXPECT_EQ(co_await r.readline(), "pong\n");
    w.close();
    server.close();
    co_await server.wait_closed();
  }());
}

namespace {
int highest_open_fd() {
  int highest = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (auto* e = ::readdir(d)) highest = std::max(highest, std::atoi(e->d_name));
  ::closedir(d);
  return highest;
}
}  // namespace

// EMFILE: accept pauses (one report per retry delay, no spinning) and resumes once descriptors
// are free again; the waiting connections are then served.
TEST(Server, EmfileBacksOffAndRecovers) {
  run([&]() -> Task<void> {
    int reports = 0;
    EventLoop::running().set_exception_handler([&](const ExceptionContext& c) {
      if (c.message.find("out of system resource") != std::string::npos) ++reports;
    });
    ServerOptions options;
    options.accept_retry_delay = 100ms;
    auto server = co_await start_server(echo_lines(), "127.0.0.1", 0, options);
    // One connection served first: UBSan's vptr check opens a pipe whenever its type cache misses,
    // which fails without descriptors and reports a false "invalid vptr"; this fills the cache
    // with the types the serving path uses.
    {
      auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
      w.write("warm\n");
      EXPECT_EQ(co_await r.readline(), "echo:warm\n");
      w.write_eof();
      EXPECT_EQ(co_await r.read(), "");  // the handler has seen the end and closed: it is done
      w.close();
      co_await w.wait_closed();
      // and with the types of the EMFILE report.
      ExceptionContext report("warm-up", std::make_exception_ptr(std::system_error(EMFILE, std::generic_category(), "accept")));
      EXPECT_NE(report.describe().find("accept"), std::string::npos);
    }
    // Clients connect with plain blocking sockets (the backlog completes them), then the process
    // runs out of descriptors before the loop gets to accept.
    std::vector<int> clients;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_of(server));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 3; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
      clients.push_back(fd);
    }
    rlimit saved{};
    ::getrlimit(RLIMIT_NOFILE, &saved);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(highest_open_fd() + 1);
    ::setrlimit(RLIMIT_NOFILE, &low);
    std::vector<int> gap_fillers;  // descriptors below the limit that were free
    for (int fd; (fd = ::dup(0)) >= 0;) gap_fillers.push_back(fd);
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    co_await sleep(350ms);
    ::getrusage(RUSAGE_SELF, &after);
    for (int fd : gap_fillers) ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved);
    EXPECT_GE(reports, 1);
    EXPECT_LE(reports, 6) << "accept retried without backing off";
    auto cpu_us = [](const rusage& u) {
      return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000L + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
    };
    EXPECT_LT(cpu_us(after) - cpu_us(before), 200000L) << "the loop spun while out of descriptors";
    for (int fd : clients) {
      auto [r, w] = make_stream(fd);
      w.write("still there\n");
      EXPECT_EQ(co_await r.readline(), "echo:still there\n");
      w.close();
    }
    server.close();
    co_await server.wait_closed();
  }());
}

// 1,000 connections open at the same time, each answered only once all are connected.
TEST(Server, ThousandConcurrentConnections) {
  constexpr int kClients = 1000;
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < 2 * kClients + 100 && lim.rlim_max >= 2 * kClients + 100) {
    lim.rlim_cur = 2 * kClients + 100;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur < 2 * kClients + 100) GTEST_SKIP() << "RLIMIT_NOFILE too low for 2,000 sockets";
  run([&]() -> Task<void> {
    int connected = 0, peak = 0;
    ServerOptions options;
    options.backlog = 2048;
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          ++connected;
          peak = std::max(peak, connected);
          std::string line = co_await r.readline();
          for (int i = 0; i < 10000 && peak < kClients; ++i) co_await sleep(1ms);
          w.write("echo:" + line);
          co_await w.drain();
          --connected;
        },
        "127.0.0.1", 0, options);
    auto port = port_of(server);
    std::vector<TaskHandle<bool>> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.push_back(create_task([port, i]() -> Task<bool> {
        auto [r, w] = co_await open_connection("127.0.0.1", port);
        std::string msg = "client " + std::to_string(i) + "\n";
        w.write(msg);
        bool ok = co_await r.readline() == "echo:" + msg;
        w.close();
        co_await w.wait_closed();
        co_return ok;
      }));
    }
    int ok = 0;
    for (auto& c : clients) ok += (co_await c) ? 1 : 0;
    EXPECT_EQ(ok, kClients);
    EXPECT_EQ(peak, kClients);
    server.close();
    co_await server.wait_closed();
    EXPECT_EQ(server.active_connections(), 0u);
  }());
}

// Graceful shutdown with 100 requests in flight: close() stops accepting, wait_closed() lets the
// handlers finish, and every client gets its full response.
TEST(Server, GracefulCloseWithHundredClientsMidRequest) {
  run([&]() -> Task<void> {
    constexpr int kClients = 100;
    int in_flight = 0;
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          std::string request = co_await r.readline();
          ++in_flight;
          co_await sleep(50ms);  // the work the shutdown must not cut short
          w.write("response to " + request);
          w.write(std::string(100 * 1024, 'r') + "\n");  // more than the socket buffer takes at once
          co_await w.drain();
        },
        "127.0.0.1", 0);
    auto port = port_of(server);
    std::vector<TaskHandle<bool>> clients;
    for (int i = 0; i < kClients; ++i) {
      clients.push_back(create_task([port, i]() -> Task<bool> {
        auto [r, w] = co_await open_connection("127.0.0.1", port);
        std::string req = "req " + std::to_string(i) + "\n";
        w.write(req);
        bool ok = co_await r.readline() == "response to " + req;
        std::string body = co_await r.readexactly(100 * 1024 + 1);
        ok = ok && body.back() == '\n';
        ok = ok && (co_await r.read()).empty();
        w.close();
        co_return ok;
      }));
    }
    for (int i = 0; i < 5000 && in_flight < kClients; ++i) co_await sleep(1ms);
    EXPECT_EQ(in_flight, kClients);
    server.close();
    EXPECT_EQ(co_await try_connect(port), "new connection -> ConnectionRefusedError");
    co_await server.wait_closed();
    EXPECT_EQ(server.active_connections(), 0u);
    int ok = 0;
    for (auto& c : clients) ok += (co_await c) ? 1 : 0;
    EXPECT_EQ(ok, kClients);
  }());
}

TEST(Server, CloseClientsAndAbortClients) {
  run([&]() -> Task<void> {
    auto server = co_await start_server(
        [](StreamReader r, StreamWriter) -> Task<void> { co_await r.read(); }, "127.0.0.1", 0);
    auto a = co_await open_connection("127.0.0.1", port_of(server));
    auto b = co_await open_connection("127.0.0.1", port_of(server));
    for (int i = 0; i < 1000 && server.active_connections() < 2; ++i) co_await sleep(1ms);
    EXPECT_EQ(server.active_connections(), 2u);
    server.close();
    server.close_clients();
    EXPECT_EQ(co_await a.reader.read(), "");
    EXPECT_EQ(co_await b.reader.read(), "");
    co_await server.wait_closed();
    a.writer.close();
    b.writer.close();
  }());
}

#ifdef AWITH_EXAMPLE_ECHO_SERVER
// The example's graceful shutdown (examples/echo_server.cpp): after serving a connection, SIGTERM
// ends it promptly when no handler is in flight, and nothing the client was sent is lost.
TEST(Server, ExampleEchoServerStopsPromptlyOnSigterm) {
  char path[] = "/tmp/awith_echo_stop_XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string script =
      "S=" AWITH_EXAMPLE_ECHO_SERVER "; C=" AWITH_EXAMPLE_ECHO_CLIENT "; out=$(mktemp)\n"
      "\"$S\" 0 >\"$out\" 2>&1 & pid=$!\n"
      "for i in $(seq 200); do grep -q \"Serving on\" \"$out\" && break; sleep 0.05; done\n"
      "port=$(sed -n \"s/^Serving on 127.0.0.1:\\([0-9]*\\)$/\\1/p\" \"$out\")\n"
      "\"$C\" \"$port\" hello >/dev/null && echo client-ok\n"
      "t0=$(date +%s%N); kill -TERM $pid; wait $pid; rc=$?; t1=$(date +%s%N)\n"
      "echo \"rc=$rc ms=$(( (t1 - t0) / 1000000 ))\"; tail -1 \"$out\"; rm -f \"$out\"\n";
  EXPECT_EQ(::write(fd, script.data(), script.size()), static_cast<ssize_t>(script.size()));
  ::close(fd);
  std::string out;
  run([&]() -> Task<void> { out = co_await run_command("timeout 30 bash " + std::string(path) + " 2>&1"); }());
  ::unlink(path);
  int rc = -1, ms = -1;
  auto at = out.find("rc=");
  if (at != std::string::npos) std::sscanf(out.c_str() + at, "rc=%d ms=%d", &rc, &ms);
  EXPECT_NE(out.find("client-ok\n"), std::string::npos) << out;
  EXPECT_EQ(rc, 0) << out;
  EXPECT_GE(ms, 0) << out;
  EXPECT_LT(ms, 500) << out;
  EXPECT_NE(out.find("Server closed"), std::string::npos) << out;
}
#endif
