// The cost of a pooled scope per use, with and without the session reset on release:
//   pg_scope HOST PORT [SCOPES]
// One task runs SCOPES times engine.connect() + fetchval("SELECT 1") on a pool of one connection,
// alternating blocks of 500 with PoolOptions::reset_on_release on and off in the same run (this
// machine is noisy: only the same-run ratio counts). Prints wall and CPU microseconds per scope.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "awith/awith.hpp"
#include "awith/pg/engine.hpp"

using namespace awith;

namespace {

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct Totals {
  double wall = 0, cpu = 0;
  long scopes = 0;
};

Task<void> block(pg::Engine& engine, int scopes, Totals& totals) {
  auto start = std::chrono::steady_clock::now();
  double cpu = cpu_seconds();
  for (int i = 0; i < scopes; ++i) {
    co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
      if (co_await c.fetchval<int>("SELECT 1") != 1) throw std::runtime_error("SELECT 1 returned something else");
    });
  }
  totals.wall += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  totals.cpu += cpu_seconds() - cpu;
  totals.scopes += scopes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s HOST PORT [SCOPES]\n", argv[0]);
    return 2;
  }
  const std::string dsn = std::string("host=") + argv[1] + " port=" + argv[2] + " user=postgres dbname=postgres";
  const int scopes = argc > 3 ? std::atoi(argv[3]) : 10000;
  if (scopes <= 0) {
    std::fprintf(stderr, "SCOPES must be positive\n");
    return 2;
  }
  Totals with_reset, without_reset;
  run([&]() -> Task<void> {
    pg::PoolOptions on, off;
    on.size = off.size = 1;
    off.reset_on_release = false;
    co_await async_with(pg::create_engine(dsn, on), [&](pg::Engine& reset) -> Task<void> {
      co_await async_with(pg::create_engine(dsn, off), [&](pg::Engine& plain) -> Task<void> {
        co_await block(reset, 50, with_reset);  // connect and prepare outside the measurement
        co_await block(plain, 50, without_reset);
        with_reset = without_reset = Totals{};
        for (int done = 0; done < scopes; done += 500) {
          co_await block(reset, 500, with_reset);
          co_await block(plain, 500, without_reset);
        }
      });
    });
  }());
  auto us = [](double s, long n) { return s * 1e6 / static_cast<double>(n); };
  std::printf("reset_on_release=true:  %.1f us/scope wall, %.1f us/scope CPU\n", us(with_reset.wall, with_reset.scopes),
              us(with_reset.cpu, with_reset.scopes));
  std::printf("reset_on_release=false: %.1f us/scope wall, %.1f us/scope CPU\n",
              us(without_reset.wall, without_reset.scopes), us(without_reset.cpu, without_reset.scopes));
  std::printf("ratio (reset / no reset): wall %.2f, CPU %.2f\n", with_reset.wall / without_reset.wall,
              with_reset.cpu / without_reset.cpu);
  return 0;
}
