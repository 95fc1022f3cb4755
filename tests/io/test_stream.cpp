// Streams: the asyncio scenarios st_03 and st_06 as traces, the reader's limits and errors, and
// the client against real peers (a Python asyncio server).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <functional>
#include <vector>

#include "awith/awith.hpp"
#include "awith/server.hpp"
#include "awith/stream.hpp"
#include "io/io_support.hpp"
#include "support/sockets.hpp"
#include "support/trace.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::pyrepr;
using test::Trace;

namespace {
std::uint16_t port_of(const Server& s) { return s.sockets().at(0).sockname.port(); }

// A connected pair of stream sockets wrapped as streams (no server needed).
std::pair<StreamPair, StreamPair> socket_pair(StreamOptions options = {}) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) throw OSError(errno, "socketpair");
  return {make_stream(fds[0], options), make_stream(fds[1], options)};
}
}  // namespace

// st_03: readline returns lines with "\n", then the partial line at EOF, then "" forever.
TEST(Stream, St03ReadlineEof) {
  Trace trace;
  run([&]() -> Task<void> {
    auto server = co_await start_server(
        [](StreamReader, StreamWriter w) -> Task<void> {
          w.write("line1\nline2\npartial");
          co_await w.drain();
          w.close();
          co_await w.wait_closed();
        },
        "127.0.0.1", 0);
    co_await async_with(server, [&](Server& s) -> Task<void> {
      auto [r, w] = co_await open_connection("127.0.0.1", port_of(s));
      for (int i = 0; i < 5; ++i) trace("readline -> " + pyrepr(co_await r.readline()));
      bool eof = r.at_eof();
      std::string all = co_await r.read();
      std::string ten = co_await r.read(10);
      trace(std::string("at_eof=") + (eof ? "True" : "False") + " read(-1) -> " + pyrepr(all) + " read(10) -> " +
            pyrepr(ten));
      w.close();
      co_await w.wait_closed();
    });
  }());
  EXPECT_EQ(trace.str(),
            "readline -> b'line1\\n'\nreadline -> b'line2\\n'\nreadline -> b'partial'\nreadline -> b''\n"
            "readline -> b''\nat_eof=True read(-1) -> b'' read(10) -> b''\n");
}

// st_06: write/writelines/drain, close is immediate, wait_closed, write after close dropped,
// drain after close raises ConnectionResetError, wait_closed repeatable.
TEST(Stream, St06CloseWaitClosedDrain) {
  Trace trace;
  run([&]() -> Task<void> {
    std::optional<std::string> got;
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          got = co_await r.read();
          w.close();
          co_await w.wait_closed();
        },
        "127.0.0.1", 0);
    co_await async_with(server, [&](Server& s) -> Task<void> {
      auto [r, w] = co_await open_connection("127.0.0.1", port_of(s));
      w.write("hello ");
      w.writelines({"big ", "world"});
      co_await w.drain();
      trace("drain returned");
      trace(std::string("before close is_closing=") + (w.is_closing() ? "True" : "False"));
      w.close();
      trace(std::string("after close() is_closing=") + (w.is_closing() ? "True" : "False"));
      co_await w.wait_closed();
      trace("wait_closed returned");
      for (int i = 0; i < 5000 && !got; ++i) co_await sleep(1ms);
      trace("server received " + pyrepr(got.value_or("<nothing>")));
      try {
        w.write("late");
        trace("write after close: no exception");
      } catch (const std::exception& e) {
        trace(std::string("write after close -> ") + e.what());
      }
      try {
        co_await w.drain();
        trace("drain after close: no exception");
      } catch (const ConnectionResetError&) {
        trace("drain after close -> ConnectionResetError");
      }
      co_await w.wait_closed();
      trace("second wait_closed ok");
    });
  }());
  EXPECT_EQ(trace.str(),
            "drain returned\nbefore close is_closing=False\nafter close() is_closing=True\nwait_closed returned\n"
            "server received b'hello big world'\nwrite after close: no exception\n"
            "drain after close -> ConnectionResetError\nsecond wait_closed ok\n");
}

TEST(Stream, ReaduntilReadexactlyAndIncompleteRead) {
  run([&]() -> Task<void> {
    auto pair = socket_pair();
    auto& a = pair.first;
    auto& b = pair.second;
    a.writer.write("key: value\r\n\r\nBODY12345");
    a.writer.write_eof();
    EXPECT_EQ(co_await b.reader.readuntil("\r\n\r\n"), "key: value\r\n\r\n");
    EXPECT_EQ(co_await b.reader.readexactly(4), "BODY");
    try {
      co_await b.reader.readexactly(10);
      ADD_FAILURE() << "readexactly past EOF returned";
    } catch (const IncompleteReadError& e) {
      EXPECT_EQ(e.partial(), "12345");
      EXPECT_EQ(e.expected(), std::optional<std::size_t>(10));
    }
    EXPECT_TRUE(b.reader.at_eof());
    try {
      co_await b.reader.readuntil("");
      ADD_FAILURE() << "empty separator accepted";
    } catch (const std::invalid_argument&) {
    }
  }());
}

TEST(Stream, LineLongerThanLimitRaisesAndDiscardsIt) {
  run([&]() -> Task<void> {
    StreamOptions small;
    small.limit = 1024;
    auto pair = socket_pair(small);
    auto& a = pair.first;
    auto& b = pair.second;
    std::string long_line(5000, 'x');
    a.writer.write(long_line + "\nok\n");
    try {
      co_await b.reader.readline();
      ADD_FAILURE() << "an over-long line was returned";
    } catch (const LimitOverrunError& e) {
      EXPECT_GT(e.consumed(), 1024u);
    }
    // The overlong line was dropped; what follows it is intact (a tail may remain if the line
    // arrived in pieces: skip it).
    std::string line;
    for (int i = 0; i < 10 && line != "ok\n"; ++i) line = co_await b.reader.readline();
    EXPECT_EQ(line, "ok\n");
    // readuntil keeps the data when the separator is beyond the limit.
    a.writer.write(std::string(2000, 'y') + "|");
    try {
      co_await b.reader.readuntil("|");
      ADD_FAILURE() << "separator beyond the limit accepted";
    } catch (const LimitOverrunError&) {
    }
    EXPECT_GE(b.reader.buffered().size(), 1025u);
  }());
}

TEST(Stream, WritelinesLargeScatterGatherArrivesInOrder) {
  run([&]() -> Task<void> {
    auto pair = socket_pair();
    auto& a = pair.first;
    auto& b = pair.second;
    std::vector<std::string> parts;
    for (int i = 0; i < 300; ++i) parts.push_back(std::string(1000 + i, static_cast<char>('a' + i % 26)));
    std::vector<std::string_view> views(parts.begin(), parts.end());
    std::string expected;
    for (auto& p : parts) expected += p;
    auto reader = create_task([&]() -> Task<std::string> {
      std::string all;
      while (all.size() < expected.size()) {
        auto chunk = co_await b.reader.read(65536);
        if (chunk.empty()) break;
        all += chunk;
      }
      co_return all;
    });
    a.writer.writelines(views);
    co_await a.writer.drain();
    EXPECT_EQ(co_await reader, expected);
  }());
}

// Slow reader: drain() blocks while the peer does not read; the write buffer stays bounded.
TEST(Stream, SlowReaderDrainBlocksAndMemoryStaysBounded) {
  run([&]() -> Task<void> {
    auto pair = socket_pair();
    auto& a = pair.first;
    auto& b = pair.second;
    const std::string chunk(64 * 1024, 'z');
    const std::size_t total_chunks = 160;  // 10 MiB
    std::size_t written = 0, max_buffered = 0;
    bool reading = false;
    std::size_t written_before_reading = 0;
    auto writer = create_task([&]() -> Task<void> {
      for (std::size_t i = 0; i < total_chunks; ++i) {
        a.writer.write(chunk);
        max_buffered = std::max(max_buffered, a.writer.write_buffer_size());
        co_await a.writer.drain();
        written += chunk.size();
      }
      a.writer.close();
      co_await a.writer.wait_closed();
    });
    co_await sleep(200ms);
    written_before_reading = written;
    reading = true;
    std::size_t received = 0;
    char buf[65536];
    while (std::size_t n = co_await b.reader.read_into(buf)) received += n;
    co_await writer;
    EXPECT_TRUE(reading);
    EXPECT_LT(written_before_reading, total_chunks * chunk.size() / 4) << "drain did not block";
    EXPECT_LE(max_buffered, 64u * 1024 + chunk.size());
    EXPECT_EQ(received, total_chunks * chunk.size());
  }());
}

TEST(Stream, HalfCloseKeepsTheOtherDirection) {
  run([&]() -> Task<void> {
    auto server = co_await start_server(
        [](StreamReader r, StreamWriter w) -> Task<void> {
          std::string all = co_await r.read();  // until the client's write_eof
          w.write("got:" + all);
          co_await w.drain();
        },
        "127.0.0.1", 0);
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
    w.write("abc");
    w.write_eof();
    EXPECT_EQ(co_await r.read(), "got:abc");
    w.close();
    co_await w.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// A short read skips the recv() that would return EAGAIN, but never an EOF: data and FIN that
// arrived together (reported in one epoll event) or apart (two events) both end in "" at once.
TEST(Stream, ShortReadThenEofIsNotMissed) {
  run([&]() -> Task<void> {
    for (bool together : {true, false}) {
      auto [a, b] = socket_pair();
      b.writer.write("abc");
      if (!together) {
        EXPECT_EQ(co_await a.reader.read(100), "abc");
        b.writer.write_eof();
        EXPECT_EQ(co_await wait_for(a.reader.read(100), 2s), "");
        continue;
      }
      b.writer.write_eof();
      co_await sleep(20ms);  // the loop polls: data and FIN come as one event
      EXPECT_EQ(co_await a.reader.read(100), "abc");
      EXPECT_EQ(co_await wait_for(a.reader.read(100), 2s), "");
      EXPECT_TRUE(a.reader.at_eof());
    }
  }());
}

TEST(Stream, ConnectRefusedAndUnresolvableRaiseTypedErrors) {
  run([&]() -> Task<void> {
    auto server = co_await start_server([](StreamReader, StreamWriter) -> Task<void> { co_return; }, "127.0.0.1", 0);
    auto port = port_of(server);
    server.close();
    co_await server.wait_closed();
    try {
      co_await open_connection("127.0.0.1", port);
      ADD_FAILURE() << "connected to a closed port";
    } catch (const ConnectionRefusedError&) {
    }
    try {
      co_await open_connection("no-such-host.invalid", 80);
      ADD_FAILURE() << "resolved an .invalid name";
    } catch (const GaiError&) {
    }
  }());
}

TEST(Stream, ResolvesLocalhostOnTheExecutorAndTriesEachAddress) {
  run([&]() -> Task<void> {
    auto server = co_await start_server(
        [](StreamReader r, StreamWriter w) -> Task<void> {
          w.write(co_await r.readline());
          co_await w.drain();
        },
        "127.0.0.1", 0);
    // "localhost" may resolve to ::1 first, where nothing listens: the next address must be tried.
    auto [r, w] = co_await open_connection("localhost", port_of(server));
    w.write("hi\n");
    EXPECT_EQ(co_await r.readline(), "hi\n");
    EXPECT_EQ(w.peername().port(), port_of(server));
    EXPECT_EQ(std::any_cast<SocketAddress>(w.get_extra_info("peername")).host(), "127.0.0.1");
    w.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// connect_timeout bounds connecting. A connect to a black hole (tests/support/sockets.hpp) hangs
// in SYN-SENT; the attempt's socket is not leaked.
TEST(Stream, ConnectTimeoutBoundsAHangingConnect) {
  test::BlackHole hole;
  run([&]() -> Task<void> {
    int fds_before = test::open_fd_count();
    StreamOptions options;
    options.connect_timeout = 300ms;
    auto start = EventLoop::running().time();
    EXPECT_THROW(co_await open_connection("127.0.0.1", hole.port(), options), TimeoutError);
    auto elapsed = EventLoop::running().time() - start;
    EXPECT_GE(elapsed, 300ms);
    EXPECT_LT(elapsed, 900ms);  // well before the first SYN retransmission (1 s)
    EXPECT_EQ(test::open_fd_count(), fds_before);
    // Without the option the same connect would still be pending after the same time.
    options.connect_timeout = std::nullopt;
    auto pending = create_task(open_connection("127.0.0.1", hole.port(), options));
    co_await sleep(400ms);
    EXPECT_FALSE(pending.done());
    pending.cancel();
    try {
      co_await pending;
    } catch (const CancelledError&) {
    }
  }());
}

TEST(Stream, UnixDomainConnection) {
  run([&]() -> Task<void> {
    std::string path = "/tmp/awith_test_unix_" + std::to_string(::getpid()) + ".sock";
    auto server = co_await start_unix_server(
        [](StreamReader r, StreamWriter w) -> Task<void> {
          w.write("unix:" + co_await r.readline());
          co_await w.drain();
        },
        path);
    auto [r, w] = co_await open_unix_connection(path);
    w.write("ping\n");
    EXPECT_EQ(co_await r.readline(), "unix:ping\n");
    w.close();
    server.close();
    co_await server.wait_closed();
    EXPECT_NE(::access(path.c_str(), F_OK), 0) << "socket file left behind";
  }());
}

// The client against a real asyncio server (Debian's python3).
TEST(Stream, ClientAgainstPythonAsyncioServer) {
  run([&]() -> Task<void> {
    // The server prints its port, serves one connection (upper-cases lines until EOF) and exits.
    const std::string script =
        "import asyncio,sys\n"
        "async def h(r,w):\n"
        "  while (l:=await r.readline()):\n"
        "    w.write(l.upper()); await w.drain()\n"
        "  w.close(); await w.wait_closed(); done.set()\n"
        "async def main():\n"
        "  global done; done=asyncio.Event()\n"
        "  s=await asyncio.start_server(h,\"127.0.0.1\",0)\n"
        "  print(s.sockets[0].getsockname()[1],flush=True)\n"
        "  await asyncio.wait_for(done.wait(),10)\n"
        "asyncio.run(main())\n";
    FILE* p = ::popen(("timeout 15 /usr/bin/python3 -c '" + script + "'").c_str(), "r");
    if (!p) {
      ADD_FAILURE() << "popen failed";
      co_return;
    }
    char line[64] = {};
    std::string port_line = co_await to_thread([&] { return std::string(std::fgets(line, sizeof line, p) ? line : ""); });
    if (port_line.empty()) {
      ADD_FAILURE() << "the Python server did not start";
      ::pclose(p);
      co_return;
    }
    auto [r, w] = co_await open_connection("127.0.0.1", static_cast<std::uint16_t>(std::stoi(port_line)));
    w.write("hello\n");
    w.writelines({"wor", "ld\n"});
    EXPECT_EQ(co_await r.readline(), "HELLO\n");
    EXPECT_EQ(co_await r.readline(), "WORLD\n");
    w.write_eof();
    EXPECT_EQ(co_await r.read(), "");
    w.close();
    co_await w.wait_closed();
    int status = co_await to_thread([&] { return ::pclose(p); });
    EXPECT_EQ(status, 0);
  }());
}

// Every read is a checkpoint, also when the bytes are already there: a cancelled task's read
// throws CancelledError and takes nothing, so the next read gets every byte.
TEST(Stream, ReadsWithDataAtHandAreCheckpointsAndLoseNothing) {
  run([]() -> Task<void> {
    auto streams = socket_pair();
    auto& a = streams.first;
    auto& b = streams.second;
    b.writer.write("one\ntwo\nthree");
    co_await b.writer.drain();
    std::string first = co_await a.reader.readexactly(1);  // the rest is now in the read buffer
    EXPECT_EQ(first, "o");
    const std::vector<std::pair<std::string, std::function<Task<void>()>>> reads = {
        {"read", [&]() -> Task<void> { (void)co_await a.reader.read(1); }},
        {"readexactly", [&]() -> Task<void> { (void)co_await a.reader.readexactly(1); }},
        {"readuntil", [&]() -> Task<void> { (void)co_await a.reader.readuntil("\n"); }},
        {"readline", [&]() -> Task<void> { (void)co_await a.reader.readline(); }},
        {"drain", [&]() -> Task<void> { co_await a.writer.drain(); }},
    };
    for (const auto& [name, read_once] : reads) {
      const auto& read = read_once;
      bool cancelled = false;
      co_await create_task([&]() -> Task<void> {
        current_task().cancel();
        try {
          co_await read();
        } catch (const CancelledError&) {
          cancelled = true;
        }
        current_task().uncancel();
      });
      EXPECT_TRUE(cancelled) << name;
    }
    b.writer.close();
    EXPECT_EQ(co_await a.reader.read(), "ne\ntwo\nthree");
    a.writer.close();
    co_await a.writer.wait_closed();
    co_await b.writer.wait_closed();
  }());
}
