// Connecting: awith::resolve (numeric addresses in place, names on the executor, typed errors), the
// order addresses are tried in, and open_connection's Happy Eyeballs race against real loopback
// sockets: a black-holed address, a refused one, a listener.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "awith/awith.hpp"
#include "support/sockets.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

SocketAddress numeric(const std::string& host, std::uint16_t port) {
  auto a = SocketAddress::from_numeric(host, port);
  if (!a) throw std::invalid_argument("not a numeric address: " + host);
  return *a;
}

std::vector<std::string> strings(const std::vector<SocketAddress>& addresses) {
  std::vector<std::string> out;
  for (const auto& a : addresses) out.push_back(a.to_string());
  return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

// A numeric address is parsed in place: resolving it has no await, so it completes even in a
// cancelled scope, where a name (an executor hop) raises CancelledError at once.
TEST(StreamDns, NumericAddressesResolveWithoutAnAwait) {
  run([]() -> Task<void> {
    std::vector<SocketAddress> v4, v6;
    bool name_resolved = false;
    CancelScope scope;
    scope.cancel();
    co_await async_with(scope, [&]() -> Task<void> {
      v4 = co_await resolve("127.0.0.1", 8080);
      v6 = co_await resolve("::1", 443);  // parsing needs no IPv6 connectivity
      co_await resolve("localhost", 80);
      name_resolved = true;
    });
    EXPECT_TRUE(scope.cancelled_caught());
    EXPECT_FALSE(name_resolved);
    EXPECT_EQ(strings(v4), std::vector<std::string>{"127.0.0.1:8080"});
    EXPECT_EQ(strings(v6), std::vector<std::string>{"[::1]:443"});
    EXPECT_EQ(v6.at(0).family(), AF_INET6);
  }());
}

TEST(StreamDns, ResolvesNamesOnTheExecutorWithoutDuplicates) {
  run([]() -> Task<void> {
    auto all = co_await resolve("localhost", 5432);
    EXPECT_FALSE(all.empty());
    for (const auto& a : all) {
      EXPECT_EQ(a.port(), 5432);
      EXPECT_EQ(std::count(all.begin(), all.end(), a), 1) << a.to_string();
    }
    EXPECT_NE(std::find(all.begin(), all.end(), numeric("127.0.0.1", 5432)), all.end());
    auto v4 = co_await resolve("localhost", 5432, AF_INET);
    for (const auto& a : v4) EXPECT_EQ(a.family(), AF_INET) << a.to_string();
  }());
}

TEST(StreamDns, UnresolvableNameRaisesGaiErrorNamingTheHost) {
  run([]() -> Task<void> {
    try {
      co_await resolve("no-such-host.invalid", 80);
      ADD_FAILURE() << "resolved an .invalid name";
    } catch (const GaiError& e) {
      EXPECT_NE(e.eai(), 0);
      EXPECT_TRUE(contains(e.what(), "no-such-host.invalid")) << e.what();
      EXPECT_FALSE(contains(e.what(), "Success")) << e.what();  // OSError's message is as given
    }
  }());
}

TEST(StreamDns, InterleaveAlternatesFamiliesFromTheFirstOne) {
  const std::vector<SocketAddress> mixed = {numeric("2001:db8::1", 1), numeric("2001:db8::2", 1),
                                            numeric("2001:db8::3", 1), numeric("192.0.2.1", 1),
                                            numeric("192.0.2.2", 1)};
  EXPECT_EQ(strings(interleave_by_family(mixed)),
            (std::vector<std::string>{"[2001:db8::1]:1", "192.0.2.1:1", "[2001:db8::2]:1", "192.0.2.2:1",
                                      "[2001:db8::3]:1"}));
  EXPECT_EQ(strings(interleave_by_family(mixed, 2)),
            (std::vector<std::string>{"[2001:db8::1]:1", "[2001:db8::2]:1", "192.0.2.1:1", "[2001:db8::3]:1",
                                      "192.0.2.2:1"}));
  EXPECT_EQ(strings(interleave_by_family(mixed, 0)), strings(mixed));
  // The family the resolver gave first leads.
  const std::vector<SocketAddress> v4_first = {numeric("192.0.2.1", 1), numeric("192.0.2.2", 1),
                                               numeric("2001:db8::1", 1)};
  EXPECT_EQ(strings(interleave_by_family(v4_first)),
            (std::vector<std::string>{"192.0.2.1:1", "[2001:db8::1]:1", "192.0.2.2:1"}));
}

// (a) The first address is black-holed: the second is tried happy_eyeballs_delay later and wins;
// the pending attempt is cancelled and its socket closed. Without the race (delay nullopt) the
// connect never gets past the first address.
TEST(StreamHappyEyeballs, ABlackHoledFirstAddressFallsBackAfterTheDelay) {
  test::BlackHole hole;
  test::Listener server;
  run([&]() -> Task<void> {
    const int fds_before = test::open_fd_count();
    std::vector<SocketAddress> addresses;
    addresses.push_back(hole.address());
    addresses.push_back(server.address());
    auto start = EventLoop::running().time();
    auto [r, w] = co_await open_connection(addresses);
    auto elapsed = EventLoop::running().time() - start;
    std::printf("black-holed first address: connected through the second after %lld ms\n",
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()));
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 2s);
    EXPECT_EQ(w.peername().port(), server.port());
    EXPECT_EQ(test::open_fd_count(), fds_before + 1);  // the stream's socket only
    w.close();
    co_await w.wait_closed();
    EXPECT_EQ(test::open_fd_count(), fds_before);

    StreamOptions options;
    options.happy_eyeballs_delay = 50ms;
    start = EventLoop::running().time();
    auto quick = co_await open_connection(addresses, options);
    elapsed = EventLoop::running().time() - start;
    EXPECT_GE(elapsed, 40ms);
    EXPECT_LT(elapsed, 200ms);
    quick.writer.abort();

    options.happy_eyeballs_delay = std::nullopt;
    options.connect_timeout = 500ms;
    EXPECT_THROW(co_await open_connection(addresses, options), TimeoutError);
    EXPECT_EQ(test::open_fd_count(), fds_before);
  }());
}

// (b) An attempt that fails starts the next one at once, however long the delay.
TEST(StreamHappyEyeballs, ARefusedFirstAddressStartsTheNextAtOnce) {
  test::Listener server;
  run([&]() -> Task<void> {
    std::vector<SocketAddress> addresses = test::refused_addresses(1);
    addresses.push_back(server.address());
    for (Duration delay : {Duration(250ms), Duration(10s)}) {
      StreamOptions options;
      options.happy_eyeballs_delay = delay;
      auto start = EventLoop::running().time();
      auto [r, w] = co_await open_connection(addresses, options);
      auto elapsed = EventLoop::running().time() - start;
      std::printf("refused first address: connected through the second after %lld us\n",
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count()));
      EXPECT_LT(elapsed, 100ms);
      EXPECT_EQ(w.peername().port(), server.port());
      w.abort();
    }
  }());
}

// (c) Every attempt fails: the raised error lists each attempt's error; sharing an errno it is that
// errno's type, else a plain OSError with errno 0. No socket is left open.
TEST(StreamHappyEyeballs, WhenEveryAttemptFailsTheErrorListsEach) {
  run([&]() -> Task<void> {
    const int fds_before = test::open_fd_count();
    auto refused = test::refused_addresses(2);
    try {
      co_await open_connection(refused);
      ADD_FAILURE() << "connected to closed ports";
    } catch (const ConnectionRefusedError& e) {
      EXPECT_EQ(e.errno_value(), ECONNREFUSED);
      EXPECT_TRUE(contains(e.what(), "Multiple exceptions")) << e.what();
      for (const auto& a : refused) EXPECT_TRUE(contains(e.what(), "connect to " + a.to_string())) << e.what();
    }
    // A Unix-domain path that does not exist fails with ENOENT: two different errnos.
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    const std::string path = "/tmp/awith_test_no_such_socket_" + std::to_string(::getpid());
    std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
    std::vector<SocketAddress> mixed;
    mixed.push_back(refused.at(0));
    mixed.emplace_back(reinterpret_cast<sockaddr*>(&un), sizeof un);
    try {
      co_await open_connection(mixed);
      ADD_FAILURE() << "connected";
    } catch (const ConnectionRefusedError& e) {
      ADD_FAILURE() << "different errors raised as one of them: " << e.what();
    } catch (const OSError& e) {
      EXPECT_EQ(e.errno_value(), 0);
      EXPECT_TRUE(contains(e.what(), "connect to " + refused.at(0).to_string() + ": Connection refused")) << e.what();
      EXPECT_TRUE(contains(e.what(), "connect to " + path + ": No such file or directory")) << e.what();
    }
    // A single address raises its own error as it is.
    try {
      co_await open_connection("127.0.0.1", refused.at(1).port());
      ADD_FAILURE() << "connected";
    } catch (const ConnectionRefusedError& e) {
      EXPECT_FALSE(contains(e.what(), "Multiple exceptions")) << e.what();
    }
    EXPECT_EQ(test::open_fd_count(), fds_before);
  }());
}

// (d) Cancelling open_connection while several attempts are pending closes every attempt's socket.
TEST(StreamHappyEyeballs, CancelMidRaceLeavesNoSocket) {
  test::BlackHole hole;
  run([&]() -> Task<void> {
    const int fds_before = test::open_fd_count();
    StreamOptions options;
    options.happy_eyeballs_delay = 20ms;
    std::vector<SocketAddress> addresses(3, hole.address());
    auto pending = create_task(open_connection(addresses, options));
    co_await sleep(200ms);
    EXPECT_FALSE(pending.done());
    EXPECT_EQ(test::open_fd_count(), fds_before + 3);  // every attempt is under way
    pending.cancel();
    bool cancelled = false;
    try {
      co_await pending;
    } catch (const CancelledError&) {
      cancelled = true;
    }
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(test::open_fd_count(), fds_before);
  }());
}

// Cancelled at any moment of a race (before the first attempt, while one, two or three attempts
// are pending, as the winner connects, after it did), open_connection leaves no socket behind.
TEST(StreamHappyEyeballs, CancellationAtAnyMomentOfTheRaceLeavesNoSocket) {
  test::BlackHole hole;
  test::Listener server;
  run([&]() -> Task<void> {
    const int fds_before = test::open_fd_count();
    std::vector<SocketAddress> addresses(2, hole.address());
    addresses.push_back(server.address());  // tried 40 ms in, connects at once
    StreamOptions options;
    options.happy_eyeballs_delay = 20ms;
    int connected = 0, timed_out = 0;
    for (auto bound = 0us; bound <= 60ms; bound += 1500us) {
      try {
        co_await async_with(timeout(bound), [&]() -> Task<void> {
          auto pair = co_await open_connection(addresses, options);
          ++connected;
          pair.writer.abort();
        });
      } catch (const TimeoutError&) {
        ++timed_out;
      }
      EXPECT_EQ(test::open_fd_count(), fds_before) << "cancelled after " << bound.count() << " us";
    }
    EXPECT_GT(connected, 0);
    EXPECT_GT(timed_out, 0);
  }());
}

// The same while the name is being resolved on the executor, and just after. A lookup the cancel
// abandoned goes on on its thread (opening /etc/hosts...): one executor thread, and an empty job
// queued behind it, make sure it has finished before the fds are counted.
TEST(StreamDns, CancellingWhileItResolvesLeavesNoSocket) {
  test::Listener server;
  LoopOptions loop_options;
  loop_options.max_workers = 1;
  run([&]() -> Task<void> {
    const int fds_before = test::open_fd_count();
    int connected = 0, timed_out = 0;
    for (auto bound = 0us; bound <= 3ms; bound += 150us) {
      try {
        co_await async_with(timeout(bound), [&]() -> Task<void> {
          auto pair = co_await open_connection("localhost", server.port());
          ++connected;
          pair.writer.abort();
        });
      } catch (const TimeoutError&) {
        ++timed_out;
      }
      auto lookups_done = to_thread([] {});
      co_await lookups_done;
      EXPECT_EQ(test::open_fd_count(), fds_before) << "cancelled after " << bound.count() << " us";
    }
    EXPECT_GT(timed_out, 0);
    std::printf("resolving localhost and connecting, cancelled at 0-3 ms: %d connected, %d timed out\n", connected,
                timed_out);
  }(), loop_options);
}
