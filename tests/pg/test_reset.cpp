// A pooled connection carries nothing of its borrower to the next one: settings, role, advisory
// locks, LISTEN, cursors, temporary tables and SQL-level prepared statements are reset on release
// (one round trip, skipped when the borrower ran nothing), while awith's statement cache stays.
#include <gtest/gtest.h>

#include "awith/awith.hpp"
#include "awith/pg/engine.hpp"
#include "pg/pg_cluster.hpp"
#include "pg/pg_proxy.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

// What a borrower can leave in a session, as one row of counts and settings.
Task<std::string> session_state(pg::Connection& c) {
  auto row = co_await c.fetchrow(
      "SELECT current_user::text, current_setting('work_mem'), "
      "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), "
      "(SELECT count(*) FROM pg_listening_channels()), "
      "(SELECT count(*) FROM pg_cursors WHERE name <> ''), "
      "(SELECT count(*) FROM pg_class WHERE relname = 'borrower_temp' AND relpersistence = 't'), "
      "(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)");
  std::string s;
  for (int i = 0; i < 7; ++i) s += (i ? " " : "") + row->get<std::string>(i);
  co_return s;
}

Task<void> leave_everything_behind(pg::Connection& c) {
  co_await c.execute("SET work_mem = '7MB'");
  co_await c.execute("SET ROLE pg_monitor");
  co_await c.execute("SELECT pg_advisory_lock(4242)");
  co_await c.execute("LISTEN borrower_channel");
  co_await c.execute("CREATE TEMP TABLE borrower_temp (x int)");
  co_await c.execute("PREPARE borrower_statement AS SELECT 1");
  co_await async_with(c.transaction(), [&](pg::Connection& t) -> Task<void> {
    co_await t.execute("DECLARE borrower_cursor CURSOR WITH HOLD FOR SELECT 1");
  });
}

const std::string kClean = "postgres 4MB 0 0 0 0 0";
const std::string kDirty = "pg_monitor 7MB 1 1 1 1 1";

Task<std::string> next_borrower_sees(bool reset_on_release, const std::string& app) {
  pg::PoolOptions options;
  options.size = 1;
  options.reset_on_release = reset_on_release;
  std::string seen;
  co_await async_with(pg::create_engine(test::pg_dsn_for(app), options), [&](pg::Engine& engine) -> Task<void> {
    int first_pid = 0;
    co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
      first_pid = c.backend_pid();
      co_await leave_everything_behind(c);
      EXPECT_EQ(co_await session_state(c), kDirty);
    });
    co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
      EXPECT_EQ(c.backend_pid(), first_pid);  // the same session, handed on
      seen = co_await session_state(c);
      // awith's own prepared statements survive the reset: this one runs without a new Parse.
      auto cached = co_await c.fetchval<std::int64_t>("SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql");
      EXPECT_GT(cached, 0);
    });
  });
  co_return seen;
}

}  // namespace

TEST(PgReset, NextBorrowerGetsACleanSession) {
  run([]() -> Task<void> { EXPECT_EQ(co_await next_borrower_sees(true, "reset_on"), kClean); }());
}

// Opted out, the next borrower inherits everything (the reset is what makes the difference).
TEST(PgReset, OptedOutTheNextBorrowerInheritsTheSession) {
  run([]() -> Task<void> { EXPECT_EQ(co_await next_borrower_sees(false, "reset_off"), kDirty); }());
}

// The reset costs one round trip, and none when the borrower ran nothing.
TEST(PgReset, OneRoundTripAndNoneForAnUntouchedConnection) {
  run([]() -> Task<void> {
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    pg::PoolOptions options;
    options.size = 1;
    co_await async_with(pg::create_engine(proxy.dsn("reset_trips"), options), [&](pg::Engine& engine) -> Task<void> {
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> { co_await c.execute("SELECT 1"); });
      int before = proxy.requests;
      co_await async_with(engine.connect(), [&](pg::Connection&) -> Task<void> { co_return; });
      EXPECT_EQ(proxy.requests - before, 0);
      before = proxy.requests;
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> { co_await c.execute("SELECT 1"); });
      EXPECT_EQ(proxy.requests - before, 2);  // the statement (already prepared) and the reset
    });
    co_await proxy.stop();
  }());
}
