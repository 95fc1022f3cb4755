// Closed-loop "SELECT 1" load, awith's row in the peer harness's PostgreSQL suite (SHARED_BENCH):
//   pg_load HOST PORT CLIENTS DURATION [--pipeline [DEPTH]] [--statement-cache-size N]
// CLIENTS tasks each hold one pooled connection for the run and loop fetchval("SELECT 1")
// (a prepared statement after the first call; unnamed every time with --statement-cache-size 0,
// as behind a transaction-pooling PgBouncer), or with --pipeline send DEPTH statements per round
// trip through a pipeline scope. Prints, as its last line: tps=N errors=N
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "awith/awith.hpp"
#include "awith/context.hpp"
#include "awith/pg/engine.hpp"

using namespace awith;

namespace {

struct Counts {
  std::int64_t ok = 0;
  std::int64_t errors = 0;
};

Task<void> client(pg::Engine& engine, TimePoint deadline, int depth, Counts& counts) {
  auto& loop = EventLoop::running();
  co_await async_with(engine.connect(), [&](pg::Connection& conn) -> Task<void> {
    while (loop.time() < deadline) {
      try {
        if (depth <= 1) {
          bool good = co_await conn.fetchval<int>("SELECT 1") == 1;
          if (loop.time() < deadline) (good ? counts.ok : counts.errors) += 1;
        } else {
          std::vector<pg::Result> results;
          co_await async_with(conn.pipeline(), [&](pg::Pipeline& p) -> Task<void> {
            for (int i = 0; i < depth; ++i) p.send("SELECT 1");
            results = co_await p.sync();
          });
          if (loop.time() >= deadline) break;
          for (auto& r : results) (r.size() == 1 && r[0].get<int>(0) == 1 ? counts.ok : counts.errors) += 1;
        }
      } catch (const pg::Error&) {
        ++counts.errors;
        if (conn.is_closed()) co_return;
      }
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  auto usage = [&] {
    std::fprintf(stderr, "usage: %s HOST PORT CLIENTS DURATION [--pipeline [DEPTH]] [--statement-cache-size N]\n",
                 argv[0]);
    return 2;
  };
  if (argc < 5) return usage();
  std::string host = argv[1], port = argv[2];
  int clients = std::atoi(argv[3]);
  double duration = std::atof(argv[4]);
  int depth = 1;
  long cache_size = 1024;
  for (int i = 5; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--pipeline") {
      depth = i + 1 < argc && argv[i + 1][0] != '-' ? std::atoi(argv[++i]) : 32;
    } else if (arg == "--statement-cache-size" && i + 1 < argc) {
      cache_size = std::atol(argv[++i]);
    } else {
      return usage();
    }
  }
  if (clients <= 0 || duration <= 0 || depth <= 0 || cache_size < 0) {
    std::fprintf(stderr, "CLIENTS, DURATION and DEPTH must be positive, N not negative\n");
    return 2;
  }
  Counts counts;
  try {
    run([&]() -> Task<void> {
      pg::PoolOptions options;
      options.size = static_cast<std::size_t>(clients);
      options.connection.statement_cache_size = static_cast<std::size_t>(cache_size);
      auto dsn = "host=" + host + " port=" + port + " user=postgres dbname=postgres";
      co_await async_with(pg::create_engine(dsn, options), [&](pg::Engine& engine) -> Task<void> {
        // Connect everyone first: the measured window is queries only, as with pgbench -T.
        std::vector<std::unique_ptr<pg::Connection>> warm;
        for (int i = 0; i < clients; ++i) warm.push_back(co_await engine.acquire());
        for (auto& c : warm) co_await engine.release(std::move(c));
        auto deadline = EventLoop::running().time() +
                        std::chrono::duration_cast<Duration>(std::chrono::duration<double>(duration));
        std::vector<TaskHandle<void>> tasks;
        for (int i = 0; i < clients; ++i) tasks.push_back(create_task(client(engine, deadline, depth, counts)));
        for (auto& t : tasks) co_await t;
      });
    }());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pg_load: %s\n", e.what());
    ++counts.errors;
  }
  std::printf("tps=%.0f errors=%lld\n", static_cast<double>(counts.ok) / duration, static_cast<long long>(counts.errors));
  return 0;
}
