// Many tasks share one ClientSession with a small pool and send a mix of GETs and POSTs to nginx
// and to an in-process server that counts how often it ran each request, every request cut at a
// random moment by a timeout or a CancelScope, while the counting server closes connections at
// random (idle ones, ones it just answered on, and ones whose request it ran before dying). The
// choices come from a seeded PRNG whose seed is printed (AWITH_HTTP_TORTURE_SEED repeats them; the
// timing, and so the interleaving, differs from run to run).
//
// Afterwards: every request delivered its full response or failed with a typed error, no POST ran
// twice, no connection is checked out, no file descriptor leaked, and the session still works.
#include <cxxabi.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "awith/http/session.hpp"
#include "http/http_test_support.hpp"

using namespace awith;
using namespace std::chrono_literals;
using awith::test::nginx;
using awith::test::header_value;
using awith::test::read_request;
using awith::test::run_http;
using awith::test::url_of;
using http::ClientResponse;
using http::ClientSession;

namespace {

constexpr int kTasks = 50;
constexpr int kRequestsPerTask = 10;
constexpr long kTotalTimeoutMs = 20000;
const std::string kBudgetHeader = "X-Request-Timeout-Ms";

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// "ServerDisconnectedError" for an awith::http::ServerDisconnectedError.
std::string type_name(const std::exception& e) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
  std::string name = status == 0 ? demangled : typeid(e).name();
  std::free(demangled);
  return name.substr(name.rfind(':') + 1);
}

// Runs every request it receives once (a few ms of work), counts the runs per X-Request-Id and
// answers with the id as the body, in two pieces a moment apart. Unless calm, it closes
// connections at random: idle ones after a random short time, one in 16 after running its request
// without answering (the server died), one in 16 right after answering.
struct CountingServer {
  explicit CountingServer(unsigned seed) : rng(seed) {}
  std::mt19937 rng;
  bool calm = false;
  std::map<std::string, int> executions;
  int closed_idle = 0, died_after_running = 0, closed_after_answer = 0;
  int bad_budgets = 0;  // a budget header missing or outside [1, total]

  ConnectionHandler handler() {
    return [this](StreamReader r, StreamWriter w) -> Task<void> {
      try {
        for (;;) {
          std::optional<Duration> idle;
          if (!calm && rng() % 4 == 0) idle = std::chrono::milliseconds(1 + rng() % 30);
          std::optional<std::string> request = co_await read_request(r, idle);
          if (!request) {
            ++closed_idle;
            break;
          }
          const std::string& head = *request;
          long budget = std::strtol(header_value(head, kBudgetHeader).c_str(), nullptr, 10);
          if (budget < 1 || budget > kTotalTimeoutMs) ++bad_budgets;
          co_await sleep(std::chrono::microseconds(rng() % 4000));
          std::string id = header_value(head, "X-Request-Id");
          ++executions[id];
          unsigned fate = calm ? 2 : rng() % 16;
          if (fate == 0) {
            ++died_after_running;
            break;
          }
          w.write("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(id.size()) + "\r\n\r\n" +
                  id.substr(0, id.size() / 2));
          co_await w.drain();
          co_await sleep(std::chrono::microseconds(rng() % 2000));
          w.write(id.substr(id.size() / 2));
          co_await w.drain();
          if (fate == 1) {
            ++closed_after_answer;
            break;
          }
        }
      } catch (const std::exception&) {
        // The client went away.
      }
      w.close();
    };
  }
};

enum class Target { nginx_get, counting_get, counting_post };

// What became of the requests.
struct Tally {
  int requests = 0, completed = 0, scope_cancelled = 0, timeout_errors = 0, cancelled_errors = 0;
  std::map<std::string, int> http_errors;  // by type
  int unexpected = 0;                      // anything else, or an error no server here causes
  std::vector<std::string> unexpected_what;
  std::vector<std::string> posted, got;    // the ids sent to the counting server
  std::vector<std::string> posted_completed, got_completed;
};

Task<void> send(ClientSession& session, Target target, const std::string& counting_url, const std::string& id) {
  if (target == Target::nginx_get) {
    co_await async_with(session.get("http://127.0.0.1:" + std::to_string(nginx().port) + "/data.json"),
                        [](ClientResponse& r) -> Task<void> { EXPECT_EQ(co_await r.text(), nginx().json); });
    co_return;
  }
  http::RequestOptions options;
  options.headers.add("X-Request-Id", id);
  if (target == Target::counting_post) options.data = id;
  std::string method = target == Target::counting_post ? "POST" : "GET";
  co_await async_with(session.request(std::move(method), counting_url, std::move(options)),
                      [&id](ClientResponse& r) -> Task<void> { EXPECT_EQ(co_await r.read(), id); });
}

// One request, cut (or not) at a random moment, and its outcome in the tally.
Task<void> one_request(ClientSession& session, std::mt19937& rng, Tally& tally, const std::string& counting_url,
                       const std::string& id) {
  Target target = static_cast<Target>(rng() % 3);
  unsigned cut = rng() % 3;  // 0: none, 1: timeout, 2: CancelScope
  Duration delay = std::chrono::microseconds(rng() % 20000);
  ++tally.requests;
  if (target == Target::counting_post) tally.posted.push_back(id);
  if (target == Target::counting_get) tally.got.push_back(id);
  bool completed = false;
  try {
    if (cut == 0) {
      co_await send(session, target, counting_url, id);
      completed = true;
    } else if (cut == 1) {
      co_await async_with(timeout(delay), [&]() -> Task<void> {
        co_await send(session, target, counting_url, id);
        completed = true;
      });
    } else {
      CancelScope scope = CancelScope::after(delay);
      co_await async_with(scope, [&](CancelScope&) -> Task<void> {
        co_await send(session, target, counting_url, id);
        completed = true;
      });
      if (scope.cancelled_caught()) ++tally.scope_cancelled;
    }
  } catch (const TimeoutError&) {
    ++tally.timeout_errors;
  } catch (const http::ClientError& e) {
    ++tally.http_errors[type_name(e)];
    // The servers here send only well-formed responses and the total timeout is far away: only
    // connection failures (closed or reset by the server) can happen.
    if (!dynamic_cast<const http::ClientConnectionError*>(&e) || dynamic_cast<const http::ClientTimeoutError*>(&e)) {
      ++tally.unexpected;
      tally.unexpected_what.push_back(e.what());
    }
  } catch (const CancelledError&) {
    ++tally.cancelled_errors;
  } catch (const std::exception& e) {
    ++tally.unexpected;
    tally.unexpected_what.push_back(type_name(e) + ": " + e.what());
  }
  if (!completed) co_return;
  ++tally.completed;
  if (target == Target::counting_post) tally.posted_completed.push_back(id);
  if (target == Target::counting_get) tally.got_completed.push_back(id);
}

unsigned torture_seed() {
  if (const char* s = std::getenv("AWITH_HTTP_TORTURE_SEED")) return static_cast<unsigned>(std::strtoul(s, nullptr, 10));
  return std::random_device()();
}

}  // namespace

TEST(HttpTorture, CancelledAtRandomAgainstServersThatCloseAtRandom) {
  const unsigned seed = torture_seed();
  std::printf("HttpTorture seed=%u (AWITH_HTTP_TORTURE_SEED=%u repeats the random choices)\n", seed, seed);
  std::fflush(stdout);
  RecordProperty("seed", std::to_string(seed));
  SCOPED_TRACE("seed " + std::to_string(seed));
  nginx();
  run_http(
      [&]() -> Task<void> {
        const std::size_t fds_before = open_fds();
        const TimePoint start = EventLoop::running().time();
        CountingServer counting(seed + 1);
        Server server = co_await start_server(counting.handler(), "127.0.0.1", 0);
        const std::string counting_url = url_of(server, "/run");
        http::SessionOptions options;
        options.timeout = http::ClientTimeout{.total = std::chrono::milliseconds(kTotalTimeoutMs)};
        options.connector.limit = 4;
        options.deadline_header = kBudgetHeader;
        ClientSession session(std::move(options));

        Tally tally;
        co_await async_with(TaskGroup(), [&](TaskGroup& group) -> Task<void> {
          for (int t = 0; t < kTasks; ++t) {
            group.create_task([&, t]() -> Task<void> {
              std::mt19937 rng(seed ^ (0x9e3779b9u * static_cast<unsigned>(t + 1)));
              for (int i = 0; i < kRequestsPerTask; ++i) {
                const std::string id = std::to_string(t) + "-" + std::to_string(i);
                co_await one_request(session, rng, tally, counting_url, id);
              }
            });
          }
          co_return;
        });
        const Duration took = EventLoop::running().time() - start;

        int http_errors = 0;
        for (auto& [type, n] : tally.http_errors) http_errors += n;
        EXPECT_EQ(tally.completed + tally.scope_cancelled + tally.timeout_errors + tally.cancelled_errors + http_errors +
                      tally.unexpected,
                  kTasks * kRequestsPerTask)
            << "every request has exactly one outcome";
        EXPECT_EQ(tally.unexpected, 0);
        for (auto& what : tally.unexpected_what) ADD_FAILURE() << "unexpected error: " << what;
        EXPECT_EQ(tally.cancelled_errors, 0) << "only the requests' own scopes cancel them";
        int most_post_runs = 0;
        for (auto& id : tally.posted) {
          int runs = counting.executions.count(id) ? counting.executions[id] : 0;
          most_post_runs = std::max(most_post_runs, runs);
          EXPECT_LE(runs, 1) << "POST " << id << " ran twice";
        }
        for (auto& id : tally.posted_completed) EXPECT_EQ(counting.executions[id], 1) << id;
        for (auto& id : tally.got) EXPECT_LE(counting.executions.count(id) ? counting.executions[id] : 0, 2) << id;
        for (auto& id : tally.got_completed) EXPECT_GE(counting.executions[id], 1) << id;
        EXPECT_EQ(counting.bad_budgets, 0);
        EXPECT_EQ(session.open_connections(), session.idle_connections()) << "a connection is still checked out";
        EXPECT_LE(session.open_connections(), 4u);

        std::string errors;
        for (auto& [type, n] : tally.http_errors) errors += " " + type + "=" + std::to_string(n);
        http::PoolStatistics stats = session.statistics();
        std::printf(
            "HttpTorture: %d requests (%zu POST, %zu counted GET) in %lld ms: %d completed, %d cut by a CancelScope, "
            "%d TimeoutError, http errors:%s; most runs of one POST id: %d; server: %d idle closes, %d deaths after "
            "running, %d closes after answering; pool: %llu opened, %llu dead idle ones caught, %llu re-sent\n",
            tally.requests, tally.posted.size(), tally.got.size(),
            static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()), tally.completed,
            tally.scope_cancelled, tally.timeout_errors, errors.empty() ? " none" : errors.c_str(), most_post_runs,
            counting.closed_idle, counting.died_after_running, counting.closed_after_answer,
            static_cast<unsigned long long>(stats.connections_opened), static_cast<unsigned long long>(stats.dropped_idle),
            static_cast<unsigned long long>(stats.resent));
        std::fflush(stdout);
        EXPECT_LT(took, 20s);

        // The session still works: the random closes stop, and the idle timers already running
        // (30 ms at most) have run out.
        counting.calm = true;
        co_await sleep(50ms);
        const std::string after = "after";
        co_await send(session, Target::nginx_get, counting_url, after);
        co_await send(session, Target::counting_post, counting_url, after);
        EXPECT_EQ(counting.executions[after], 1);
        EXPECT_EQ(session.open_connections(), session.idle_connections());

        co_await session.close();
        EXPECT_EQ(session.open_connections(), 0u);
        server.close();
        server.abort_clients();
        co_await server.wait_closed();
        co_await sleep(10ms);  // the loop finishes closing what it was closing
        EXPECT_EQ(open_fds(), fds_before) << "file descriptors leaked";
      },
      30s);
}
