// COMMIT under cancellation, against a real PostgreSQL behind a proxy that delays or cuts the
// server's replies: a COMMIT once sent is awaited through a cancellation (within a bound), and an
// outcome that cannot be learned is reported as CommitOutcomeUnknown with the transaction id,
// which the tests settle with pg_xact_status on the server.
#include <gtest/gtest.h>

#include "awith/awith.hpp"
#include "awith/pg/engine.hpp"
#include "pg/pg_cluster.hpp"
#include "pg/pg_proxy.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

// A one-row table of the test's own, with v = 0.
Task<void> make_counter(pg::Connection& admin, const std::string& table) {
  co_await admin.execute("DROP TABLE IF EXISTS " + table);
  co_await admin.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, v int NOT NULL)");
  co_await admin.execute("INSERT INTO " + table + " VALUES (1, 0)");
}

Task<int> counter(pg::Connection& admin, const std::string& table) {
  co_return co_await admin.fetchval<int>("SELECT v FROM " + table + " WHERE id = 1");
}

}  // namespace

// The deadline passes after COMMIT was sent and before its reply arrives (replies delayed by
// 200 ms): the block exits as committed, and the timeout exits normally with expired() true.
TEST(PgCommit, DeadlineAfterCommitWasSentWaitsForTheOutcome) {
  run([]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await make_counter(*admin, "commit_deadline");
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    pg::PoolOptions options;
    options.size = 1;
    co_await async_with(pg::create_engine(proxy.dsn("commit_deadline"), options), [&](pg::Engine& engine) -> Task<void> {
      bool expired = false;
      bool body_done = false;
      co_await async_with(timeout(30s), [&](Timeout& t) -> Task<void> {
        co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
          co_await conn.execute("UPDATE commit_deadline SET v = v + 1 WHERE id = 1");
          // COMMIT goes out as the body returns; its reply takes 200 ms; the deadline is in 80.
          proxy.reply_delay = 200ms;
          t.reschedule(EventLoop::running().time() + 80ms);
          body_done = true;
        });
        expired = t.expired();
      });
      EXPECT_TRUE(body_done);
      EXPECT_TRUE(expired);
      proxy.reply_delay = {};
    });
    EXPECT_EQ(co_await counter(*admin, "commit_deadline"), 1);
    co_await proxy.stop();
  }());
}

// A deadline that passes before COMMIT is sent rolls back, and the scope raises TimeoutError.
TEST(PgCommit, DeadlineBeforeCommitWasSentRollsBack) {
  run([]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await make_counter(*admin, "commit_before");
    co_await async_with(pg::create_engine(test::pg_dsn_for("commit_before")), [&](pg::Engine& engine) -> Task<void> {
      bool timed_out = false;
      try {
        co_await async_with(timeout(50ms), [&]() -> Task<void> {
          co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
            co_await conn.execute("UPDATE commit_before SET v = v + 1 WHERE id = 1");
            co_await conn.execute("SELECT pg_sleep(0.3)");
          });
        });
      } catch (const TimeoutError&) {
        timed_out = true;
      }
      EXPECT_TRUE(timed_out);
    });
    EXPECT_EQ(co_await counter(*admin, "commit_before"), 0);
  }());
}

// The connection is cut after the server answered the transaction id and before COMMIT's own reply:
// CommitOutcomeUnknown carries the id, and the server's pg_xact_status says what happened.
TEST(PgCommit, ConnectionLostAfterCommitWasSentIsOutcomeUnknownWithTheTransactionId) {
  run([]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await make_counter(*admin, "commit_lost");
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    co_await async_with(pg::create_engine(proxy.dsn("commit_lost")), [&](pg::Engine& engine) -> Task<void> {
      std::optional<std::string> id;
      bool unknown = false;
      try {
        co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
          co_await conn.execute("UPDATE commit_lost SET v = v + 1 WHERE id = 1");
          proxy.cut_after_commit_id = true;
        });
      } catch (const pg::CommitOutcomeUnknown& e) {
        unknown = true;
        id = e.transaction_id();
        EXPECT_NE(std::string(e.what()).find("outcome unknown"), std::string::npos) << e.what();
      }
      proxy.cut_after_commit_id = false;
      EXPECT_TRUE(unknown);
      EXPECT_EQ(proxy.cuts, 1);
      AWITH_CO_ASSERT(id.has_value());
      // The server went on with COMMIT after sending the id: committed, as the row shows.
      std::string status;
      for (int i = 0; i < 100; ++i) {
        status = co_await admin->fetchval<std::string>("SELECT pg_xact_status($1::xid8)", *id);
        if (status != "in progress") break;
        co_await sleep(10ms);
      }
      EXPECT_EQ(status, "committed");
      EXPECT_EQ(co_await counter(*admin, "commit_lost"), 1);
      EXPECT_EQ(engine.status().checked_out, 0u);
    });
    co_await proxy.stop();
  }());
}

// A transaction that wrote nothing has no id: losing COMMIT's reply is a lost connection, not an
// unknown outcome (there is nothing to settle).
TEST(PgCommit, ReadOnlyTransactionLostAtCommitIsConnectionLost) {
  run([]() -> Task<void> {
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    co_await async_with(pg::create_engine(proxy.dsn("commit_readonly")), [&](pg::Engine& engine) -> Task<void> {
      bool lost = false;
      try {
        co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
          co_await conn.execute("SELECT 1");
          proxy.cut_after_commit_id = true;
        });
      } catch (const pg::CommitOutcomeUnknown& e) {
        ADD_FAILURE() << "a read-only transaction reported an unknown outcome: " << e.what();
      } catch (const pg::ConnectionLostError&) {
        lost = true;
      }
      EXPECT_TRUE(lost);
      EXPECT_EQ(proxy.cuts, 1);
    });
    co_await proxy.stop();
  }());
}

// No reply within the commit bound: CommitOutcomeUnknown naming the bound; the connection is closed,
// and the server committed meanwhile.
TEST(PgCommit, NoReplyWithinTheCommitBoundIsOutcomeUnknown) {
  run([]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await make_counter(*admin, "commit_bound");
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    pg::PoolOptions options;
    options.commit_timeout = 100ms;
    co_await async_with(pg::create_engine(proxy.dsn("commit_bound"), options), [&](pg::Engine& engine) -> Task<void> {
      std::optional<std::string> id;
      bool unknown = false;
      try {
        co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
          co_await conn.execute("UPDATE commit_bound SET v = v + 1 WHERE id = 1");
          proxy.reply_delay = 400ms;
        });
      } catch (const pg::CommitOutcomeUnknown& e) {
        unknown = true;
        id = e.transaction_id();
        EXPECT_NE(std::string(e.what()).find("100 ms"), std::string::npos) << e.what();
      }
      proxy.reply_delay = {};
      EXPECT_TRUE(unknown);
      EXPECT_FALSE(id.has_value());  // the id travels in the same delayed reply
      EXPECT_EQ(engine.status().open, 0u);
    });
    int v = -1;
    for (int i = 0; i < 100 && v != 1; ++i) {
      v = co_await counter(*admin, "commit_bound");
      if (v != 1) co_await sleep(10ms);
    }
    EXPECT_EQ(v, 1);
    co_await proxy.stop();
  }());
}

// Transaction::commit() (conn.transaction()) follows the same rule as engine.begin().
TEST(PgCommit, ConnectionTransactionCommitWaitsThroughTheDeadline) {
  run([]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await make_counter(*admin, "commit_conn");
    test::PgProxy proxy;
    co_await proxy.start(test::pg_dsn());
    auto conn = co_await pg::Connection::connect(proxy.dsn("commit_conn"));
    bool expired = false;
    co_await async_with(timeout(30s), [&](Timeout& t) -> Task<void> {
      co_await async_with(conn->transaction(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("UPDATE commit_conn SET v = v + 1 WHERE id = 1");
        proxy.reply_delay = 200ms;
        t.reschedule(EventLoop::running().time() + 80ms);
      });
      expired = t.expired();
    });
    proxy.reply_delay = {};
    EXPECT_TRUE(expired);
    EXPECT_FALSE(conn->in_transaction());
    EXPECT_EQ(co_await counter(*admin, "commit_conn"), 1);
    conn.reset();
    co_await proxy.stop();
  }());
}
