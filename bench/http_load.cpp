// Closed-loop HTTP GET load with awith's ClientSession, the twin of the aiohttp load client in the
// peer harness's HTTP suite (SHARED_BENCH): CONNS tasks share one session whose pool is limited to
// CONNS keep-alive connections; each repeats GET URL + read the body until the deadline.
//
//   http_load URL CONNS DURATION_SECONDS
// Prints one line: requests_per_s=N errors=N (non-200 responses and exceptions).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "awith/awith.hpp"
#include "awith/http/session.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

struct Counts {
  long ok = 0;
  long errors = 0;
};

Task<void> worker(http::ClientSession& session, const std::string& url, TimePoint deadline, Counts& counts) {
  auto& loop = EventLoop::running();
  while (loop.time() < deadline) {
    bool ok = false;
    try {
      ok = co_await async_with(session.get(url), [](http::ClientResponse& resp) -> Task<bool> {
        co_await resp.read();
        co_return resp.status() == 200;
      });
    } catch (const std::exception&) {
      ok = false;
    }
    if (loop.time() >= deadline) break;  // finished after the window: not counted
    ++(ok ? counts.ok : counts.errors);
  }
}

Task<void> amain(std::string url, std::size_t conns, double duration) {
  http::SessionOptions options{.timeout = {.total = 10s}, .connector = {.limit = conns}};
  http::ClientSession session(std::move(options));
  Counts counts;
  auto& loop = EventLoop::running();
  TimePoint start = loop.time();
  TimePoint deadline = start + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(duration));
  co_await async_with(TaskGroup(), [&](TaskGroup& group) -> Task<void> {
    for (std::size_t i = 0; i < conns; ++i)
      group.create_task([&session, &url, deadline, &counts]() { return worker(session, url, deadline, counts); });
    co_return;
  });
  co_await session.close();
  double elapsed = std::min(std::chrono::duration<double>(loop.time() - start).count(), duration);
  std::printf("requests_per_s=%.0f errors=%ld\n", static_cast<double>(counts.ok) / elapsed, counts.errors);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s URL CONNS DURATION_SECONDS\n", argv[0]);
    return 2;
  }
  run(amain(argv[1], std::strtoul(argv[2], nullptr, 10), std::strtod(argv[3], nullptr)));
}
