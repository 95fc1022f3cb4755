// Fairness probes: how late a deadline fires for a task that never has to wait, and how long an
// I/O round trip takes while many tasks are always ready. scripts/bench_fairness.sh runs them
// beside bench/fairness_asyncio.py, the same programs in asyncio.
//
//   fairness queue_timeout [ITEMS]   a consumer gets ITEMS queued items under timeout(10 ms);
//                                    prints how long after the deadline it was interrupted
//   fairness busy_server N SECONDS   serves a 1-byte echo on 127.0.0.1 while N tasks each do
//                                    ~1 us of work per step and yield (sleep(0)); prints the port,
//                                    stops after SECONDS
//   fairness rtt_client PORT COUNT   COUNT 1-byte round trips (bounded by 60 s); prints p50, p99
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <awith/awith.hpp>
#include <awith/server.hpp>
#include <awith/stream.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using awith::Task;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

int queue_timeout(long items) {
  long taken = 0;
  double late_ms = 0;
  awith::run([&]() -> Task<void> {
    awith::Queue<int> q;
    for (long i = 0; i < items; ++i) q.put_nowait(1);
    auto start = Clock::now();
    try {
      co_await awith::async_with(awith::timeout(10ms), [&]() -> Task<void> {
        for (;;) taken += co_await q.get();
      });
    } catch (const awith::TimeoutError&) {
    }
    late_ms = ms_since(start) - 10.0;
  }());
  std::printf("queue_timeout items=%ld taken=%ld late_ms=%.2f\n", items, taken, late_ms);
  return 0;
}

// About 1 us of work that the compiler cannot drop.
void spin_one_microsecond() {
  auto until = Clock::now() + 1us;
  while (Clock::now() < until) {
  }
}

int busy_server(int tasks, double seconds) {
  awith::run([&]() -> Task<void> {
    bool stop = false;
    std::vector<awith::TaskHandle<void>> busy;
    for (int i = 0; i < tasks; ++i) {
      busy.push_back(awith::create_task([&]() -> Task<void> {
        while (!stop) {
          spin_one_microsecond();
          co_await awith::sleep(0);
        }
      }));
    }
    auto server = co_await awith::start_server(
        [](awith::StreamReader r, awith::StreamWriter w) -> Task<void> {
          for (;;) {
            std::string b = co_await r.read(1);
            if (b.empty()) break;
            w.write(b);
            co_await w.drain();
          }
          w.close();
        },
        "127.0.0.1", 0);
    std::printf("%u\n", server.sockets().at(0).sockname.port());
    std::fflush(stdout);
    co_await awith::sleep(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& t : busy) co_await t;
    server.close();
    co_await server.wait_closed();
  }());
  return 0;
}

int rtt_client(int port, int count) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::perror("connect");
    return 1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<double> us;
  auto deadline = Clock::now() + 60s;
  for (int i = 0; i < count && Clock::now() < deadline; ++i) {
    char b = 'x';
    auto t0 = Clock::now();
    if (::write(fd, &b, 1) != 1 || ::read(fd, &b, 1) != 1) {
      std::perror("round trip");
      return 1;
    }
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  ::close(fd);
  std::sort(us.begin(), us.end());
  auto pct = [&](double p) { return us[std::min(us.size() - 1, static_cast<std::size_t>(p * us.size()))]; };
  std::printf("rtt n=%zu p50_us=%.0f p99_us=%.0f\n", us.size(), pct(0.5), pct(0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "queue_timeout") return queue_timeout(argc > 2 ? std::atol(argv[2]) : 20'000'000);
  if (mode == "busy_server" && argc > 3) return busy_server(std::atoi(argv[2]), std::atof(argv[3]));
  if (mode == "rtt_client" && argc > 3) return rtt_client(std::atoi(argv[2]), std::atoi(argv[3]));
  std::fprintf(stderr, "usage: %s queue_timeout [ITEMS] | busy_server N SECONDS | rtt_client PORT COUNT\n", argv[0]);
  return 2;
}
