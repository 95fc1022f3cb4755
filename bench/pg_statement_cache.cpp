// What an unnamed statement costs against a cached prepared one, on one connection to the server
// directly: statement_cache_size = 0 (what a transaction-pooling PgBouncer without prepared
// statement support needs) sends Parse, Bind and Execute every time, so the server parses and
// plans every statement; the cache sends Bind and Execute of a statement prepared once.
//
//   pg_statement_cache DSN [N]
// N (default 20000) sequential `SELECT $1::int` in each mode, in alternating rounds so that both
// meet the same machine load. Prints µs per statement for each mode and the ratio unnamed / cached.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "awith/awith.hpp"
#include "awith/pg/connection.hpp"

using namespace awith;

namespace {

using Clock = std::chrono::steady_clock;

Task<double> statements(pg::Connection& c, int n) {
  auto start = Clock::now();
  for (int i = 0; i < n; ++i)
    if (co_await c.fetchval<int>("SELECT $1::int", i) != i) throw std::runtime_error("wrong result");
  co_return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DSN [N]\n", argv[0]);
    return 2;
  }
  std::string dsn = argv[1];
  const int n = argc > 2 ? std::atoi(argv[2]) : 20000;
  constexpr int kRounds = 10;
  if (n < kRounds) {
    std::fprintf(stderr, "N must be at least %d\n", kRounds);
    return 2;
  }
  try {
    run([&]() -> Task<void> {
      pg::ConnectOptions unnamed_options;
      unnamed_options.statement_cache_size = 0;
      auto cached = co_await pg::Connection::connect(dsn);
      auto unnamed = co_await pg::Connection::connect(dsn, unnamed_options);
      co_await statements(*cached, 100);  // warm-up; the cached connection prepares here
      co_await statements(*unnamed, 100);
      double cached_s = 0, unnamed_s = 0;
      for (int r = 0; r < kRounds; ++r) {
        cached_s += co_await statements(*cached, n / kRounds);
        unnamed_s += co_await statements(*unnamed, n / kRounds);
      }
      const int done = n / kRounds * kRounds;
      std::printf("%d sequential SELECT $1::int per mode, one connection each\n", done);
      std::printf("cached (prepared once):    %.1f us/statement\n", cached_s * 1e6 / done);
      std::printf("unnamed (cache size 0):    %.1f us/statement\n", unnamed_s * 1e6 / done);
      std::printf("ratio unnamed / cached:    %.2f\n", unnamed_s / cached_s);
    }());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pg_statement_cache: %s\n", e.what());
    return 1;
  }
  return 0;
}
