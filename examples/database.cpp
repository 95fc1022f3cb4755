// asyncpg / SQLAlchemy AsyncEngine in awith: a pool of PostgreSQL connections, transactions as
// `async with engine.begin()`, and what a cancelled query leaves behind (nothing).
//
//   database "host=127.0.0.1 port=5432 user=postgres dbname=postgres"   (or AWITH_PG_DSN=...)
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "awith/awith.hpp"
#include "awith/context.hpp"
#include "awith/pg/engine.hpp"
#include "awith/timeout.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

Task<std::int64_t> count_rows(pg::Engine& engine) {
  co_return co_await async_with(engine.connect(), [](pg::Connection& c) -> Task<std::int64_t> {
    co_return co_await c.fetchval<std::int64_t>("SELECT count(*) FROM tour_accounts");
  });
}

Task<void> tour(std::string dsn) {
  pg::PoolOptions options;
  options.size = 2;
  co_await async_with(pg::create_engine(dsn, options), [](pg::Engine& engine) -> Task<void> {
    co_await async_with(engine.connect(), [](pg::Connection& c) -> Task<void> {
      co_await c.execute("DROP TABLE IF EXISTS tour_accounts");
      co_await c.execute("CREATE TABLE tour_accounts (id serial PRIMARY KEY, owner text NOT NULL, balance int8)");
    });

    // 1. async with engine.begin() as conn: ... -> COMMIT
    std::printf("rows before the first transaction: %lld\n", static_cast<long long>(co_await count_rows(engine)));
    co_await async_with(engine.begin(), [](pg::Connection& c) -> Task<void> {
      co_await c.execute("INSERT INTO tour_accounts (owner, balance) VALUES ($1, $2), ($3, $4)", "ada", 100, "bob", 50);
    });
    std::printf("rows after it committed:           %lld\n", static_cast<long long>(co_await count_rows(engine)));

    // 2. the body raises -> ROLLBACK, the exception propagates.
    try {
      co_await async_with(engine.begin(), [](pg::Connection& c) -> Task<void> {
        co_await c.execute("INSERT INTO tour_accounts (owner, balance) VALUES ($1, $2)", "eve", 1000000);
        throw std::runtime_error("fraud detected");
      });
    } catch (const std::runtime_error& e) {
      std::printf("transaction raised \"%s\" and was rolled back\n", e.what());
    }
    std::printf("rows after the rollback:           %lld\n", static_cast<long long>(co_await count_rows(engine)));

    // 3. A query holding a row lock is cancelled by a timeout: the server-side statement is
    // cancelled, the transaction rolled back, the lock released, the connection back in the pool.
    try {
      co_await async_with(timeout(200ms), [&]() -> Task<void> {
        co_await async_with(engine.begin(), [](pg::Connection& c) -> Task<void> {
          co_await c.execute("UPDATE tour_accounts SET balance = 0 WHERE owner = $1", "ada");
          co_await c.execute("SELECT pg_sleep(60)");
        });
      });
    } catch (const TimeoutError&) {
      std::printf("the slow query timed out after 200 ms\n");
    }
    co_await async_with(engine.connect(), [](pg::Connection& c) -> Task<void> {
      auto busy = co_await c.fetchval<std::int64_t>(
          "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
          "AND backend_type = 'client backend' AND state <> 'idle'");
      auto locks = co_await c.fetchval<std::int64_t>(
          "SELECT count(*) FROM pg_locks WHERE relation = 'tour_accounts'::regclass");
      auto balance = co_await c.fetchval<std::int64_t>("SELECT balance FROM tour_accounts WHERE owner = $1", "ada");
      std::printf("after the cancel: %lld busy backends, %lld locks on the table, ada's balance %lld\n",
                  static_cast<long long>(busy), static_cast<long long>(locks), static_cast<long long>(balance));
    });
    auto status = engine.status();
    std::printf("pool: %zu open, %zu idle, %zu checked out\n", status.open, status.idle, status.checked_out);

    co_await async_with(engine.connect(), [](pg::Connection& c) -> Task<void> {
      co_await c.execute("DROP TABLE tour_accounts");
    });
  });
  std::printf("engine disposed: every connection closed\n");
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("AWITH_PG_DSN");
  std::string dsn = argc > 1 ? argv[1] : env ? env : "";
  if (dsn.empty()) {
    std::fprintf(stderr, "usage: %s DSN (or set AWITH_PG_DSN), e.g. \"host=127.0.0.1 port=5432 user=postgres\"\n", argv[0]);
    return 2;
  }
  try {
    run(tour(dsn));
  } catch (const pg::Error& e) {
    std::fprintf(stderr, "database error: %s\n", e.what());
    return 1;
  }
  return 0;
}
