// Deadlines flow into PostgreSQL: a transaction begun under a deadline tells the server the time
// left (SET LOCAL statement_timeout in BEGIN's round trip), so a slow statement ends on the server
// at the caller's deadline without a cancel request; the pool wait is bounded by the caller's
// deadline with the caller's own error.
#include <gtest/gtest.h>

#include "awith/awith.hpp"
#include "awith/pg/engine.hpp"
#include "pg/pg_cluster.hpp"
#include "pg/pg_proxy.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

struct SlowQueryOutcome {
  bool timed_out = false;
  Duration elapsed{};
  std::uint64_t cancel_requests = 0;
  std::string server_state;  // the backend's pg_stat_activity state right after the TimeoutError
};

// A pg_sleep(5) inside conn.transaction() under timeout(100ms).
Task<SlowQueryOutcome> slow_query_under_deadline(bool deadline_to_server, const std::string& app) {
  auto admin = co_await pg::Connection::connect(test::pg_dsn());
  auto conn = co_await pg::Connection::connect(test::pg_dsn_for(app));
  conn->set_deadline_to_server(deadline_to_server);
  SlowQueryOutcome out;
  const TimePoint start = EventLoop::running().time();
  try {
    co_await async_with(timeout(100ms), [&]() -> Task<void> {
      co_await async_with(conn->transaction(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("SELECT pg_sleep(5)");
      });
    });
  } catch (const TimeoutError&) {
    out.timed_out = true;
  }
  out.elapsed = EventLoop::running().time() - start;
  out.cancel_requests = conn->cancel_requests();
  out.server_state = co_await admin->fetchval<std::string>(
      "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = $1), 'gone')", conn->backend_pid());
  co_return out;
}

}  // namespace

// The server ends the statement at the deadline by itself: the caller gets its scope's TimeoutError
// within the deadline + 50 ms, no cancel request is sent, and the backend is idle at once.
TEST(PgDeadline, SlowQueryEndsOnTheServerAtTheDeadlineWithoutACancelRequest) {
  run([]() -> Task<void> {
    auto out = co_await slow_query_under_deadline(true, "deadline_server");
    EXPECT_TRUE(out.timed_out);
    EXPECT_EQ(out.cancel_requests, 0u);
    EXPECT_EQ(out.server_state, "idle");
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(out.elapsed).count();
    std::printf("deadline 100 ms: TimeoutError after %lld ms, %llu cancel requests\n", static_cast<long long>(ms),
                static_cast<unsigned long long>(out.cancel_requests));
    EXPECT_GE(ms, 95);
    EXPECT_LT(ms, 150 + 200);  // 50 ms by the rule, plus what a sanitizer build adds
  }());
}

// Opted out, the client alone enforces the deadline: it takes a cancel request to stop the server.
TEST(PgDeadline, OptedOutTheClientNeedsACancelRequest) {
  run([]() -> Task<void> {
    auto out = co_await slow_query_under_deadline(false, "deadline_client");
    EXPECT_TRUE(out.timed_out);
    EXPECT_EQ(out.cancel_requests, 1u);
    EXPECT_EQ(out.server_state, "idle");
  }());
}

// Telling the server costs no round trip: the same transaction takes as many with and without a
// deadline (counted by a proxy as client requests).
TEST(PgDeadline, TheDeadlineTravelsWithBeginAndCostsNoRoundTrip) {
  run([]() -> Task<void> {
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    auto conn = co_await pg::Connection::connect(proxy.dsn("deadline_trips"));
    auto one_transaction = [&]() -> Task<std::string> {
      std::string timeout_seen;
      co_await async_with(conn->transaction(), [&](pg::Connection& c) -> Task<void> {
        timeout_seen = co_await c.fetchval<std::string>("SELECT current_setting('statement_timeout')");
      });
      co_return timeout_seen;
    };
    (void)co_await one_transaction();  // prepares the statement once
    int before = proxy.requests;
    std::string without = co_await one_transaction();
    int plain = proxy.requests - before;
    before = proxy.requests;
    std::string with;
    co_await async_with(timeout(10s), [&]() -> Task<void> { with = co_await one_transaction(); });
    int under_deadline = proxy.requests - before;
    EXPECT_EQ(without, "0");
    // The server got the time left: a bit under 10 s.
    AWITH_CO_ASSERT(with.size() > 2 && with.substr(with.size() - 2) == "ms");
    int ms = std::stoi(with);
    EXPECT_GT(ms, 9000);
    EXPECT_LE(ms, 10000);
    EXPECT_EQ(plain, 3);  // BEGIN, the statement, COMMIT
    EXPECT_EQ(under_deadline, plain);
    // The setting is the transaction's: gone after COMMIT.
    EXPECT_EQ(co_await conn->fetchval<std::string>("SELECT current_setting('statement_timeout')"), "0");
    conn.reset();
    co_await proxy.stop();
  }());
}

// Under 1 ms left, nothing is sent (a statement_timeout of 0 would mean no limit): the caller's scope
// raises when its deadline passes.
TEST(PgDeadline, ABudgetUnderOneMillisecondFailsLocally) {
  run([]() -> Task<void> {
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    auto conn = co_await pg::Connection::connect(proxy.dsn("deadline_tiny"));
    int before = proxy.requests;
    bool timed_out = false;
    try {
      co_await async_with(timeout_at(EventLoop::running().time() + 300us), [&]() -> Task<void> {
        co_await async_with(conn->transaction(), [&](pg::Connection&) -> Task<void> { co_return; });
      });
    } catch (const TimeoutError&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    EXPECT_EQ(proxy.requests, before);
    EXPECT_FALSE(conn->in_transaction());
    conn.reset();
    co_await proxy.stop();
  }());
}

// The pool wait: the caller's nearer deadline ends it with the caller's TimeoutError; a nearer
// acquire_timeout still gives PoolTimeoutError.
TEST(PgDeadline, PoolWaitIsBoundedByTheCallersDeadline) {
  run([]() -> Task<void> {
    pg::PoolOptions options;
    options.size = 1;
    options.acquire_timeout = 200ms;
    co_await async_with(pg::create_engine(test::pg_dsn_for("deadline_pool"), options), [&](pg::Engine& engine) -> Task<void> {
      co_await async_with(engine.connect(), [&](pg::Connection&) -> Task<void> {
        // Scope deadline (50 ms) nearer than acquire_timeout (200 ms).
        bool scope_error = false;
        try {
          co_await async_with(timeout(50ms), [&]() -> Task<void> {
            co_await async_with(engine.connect(), [&](pg::Connection&) -> Task<void> { co_return; });
          });
        } catch (const pg::PoolTimeoutError&) {
          ADD_FAILURE() << "the pool's error where the caller's deadline was nearer";
        } catch (const TimeoutError&) {
          scope_error = true;
        }
        EXPECT_TRUE(scope_error);
        // acquire_timeout (200 ms) nearer than the scope (10 s).
        bool pool_error = false;
        try {
          co_await async_with(timeout(10s), [&]() -> Task<void> {
            co_await async_with(engine.connect(), [&](pg::Connection&) -> Task<void> { co_return; });
          });
        } catch (const pg::PoolTimeoutError&) {
          pool_error = true;
        }
        EXPECT_TRUE(pool_error);
      });
      EXPECT_EQ(engine.status().checked_out, 0u);
    });
  }());
}
