// The PostgreSQL examples of README.md, docs/pg.md and awith/pg/*.hpp, compiled (scripts/snippets.py
// checks that the documents show exactly this code).
#include <string>

#include "awith/awith.hpp"
#include "awith/pg/engine.hpp"

namespace pg_header_example {
using namespace awith;

Task<void> update(std::string dsn) {
  // snippet-begin: engine
  co_await async_with(pg::create_engine(dsn), [&](pg::Engine& engine) -> Task<void> {
    co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
      co_await conn.execute("UPDATE t SET v = $1 WHERE id = $2", 5, 1);
    });  // COMMIT; ROLLBACK when the body throws or is cancelled
  });    // every pooled connection closed
  // snippet-end: engine
}

}  // namespace pg_header_example

namespace pg_docs_example {
namespace pg = awith::pg;

awith::Task<void> without_statement_cache(std::string dsn) {
  // snippet-begin: statement_cache_off
  pg::ConnectOptions options;
  options.statement_cache_size = 0;  // behind PgBouncer in transaction mode (< 1.21)
  auto conn = co_await pg::Connection::connect(dsn, options);

  pg::PoolOptions pool;
  pool.connection.statement_cache_size = 0;  // every connection the engine opens
  auto engine = pg::create_engine(dsn, pool);
  // snippet-end: statement_cache_off
}

}  // namespace pg_docs_example

namespace readme_pg_example {

awith::Task<void> transfer(std::string dsn) {
  // snippet-begin: engine_begin
  co_await awith::async_with(awith::pg::create_engine(dsn), [&](awith::pg::Engine& engine) -> awith::Task<void> {
    co_await awith::async_with(engine.begin(), [&](awith::pg::Connection& conn) -> awith::Task<void> {
      co_await conn.execute("UPDATE accounts SET balance = balance - $1 WHERE id = $2", 10, 1);
    });  // COMMIT on success; ROLLBACK on an exception or a cancellation before COMMIT was sent; the
         // connection goes back clean, its session reset
  });
  // snippet-end: engine_begin
}

}  // namespace readme_pg_example
