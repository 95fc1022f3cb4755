// awith::pg behind a real PgBouncer in transaction pooling mode (scripts/pgbouncer.sh: 2 server
// connections), where each transaction of a client may run on another server connection.
//
// The choreographed tests rely on PgBouncer handing out idle server connections last in, first
// out (server_round_robin = 0, the default): a client alone gets the server connection used last,
// and a second client holding it in a transaction sends the first one to the other.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "awith/awith.hpp"
#include "awith/context.hpp"
#include "awith/pg/engine.hpp"
#include "pg/pg_cluster.hpp"

using namespace awith;

namespace {

class PgBouncer : public test::PgBouncerTest {
 protected:
  Task<std::unique_ptr<pg::Connection>> connect(std::size_t cache_size) {
    pg::ConnectOptions options;
    options.statement_cache_size = cache_size;
    co_return co_await pg::Connection::connect(bouncer_dsn(), options);
  }
};

const std::string kPid = "SELECT pg_backend_pid()";

Task<int> pid_of(pg::Connection& c) { co_return co_await c.fetchval<int>(kPid); }

// A fresh table (real, not temporary: every transaction may see another server session).
Task<void> recreate(pg::Connection& c, const std::string& table) {
  co_await c.execute("DROP TABLE IF EXISTS " + table);
  co_await c.execute("CREATE TABLE " + table + " (v int NOT NULL, pid int NOT NULL)");
}

std::vector<pg::Params> batch(int from, int n) {
  std::vector<pg::Params> rows;
  for (int i = from; i < from + n; ++i) rows.push_back(pg::make_params(i));
  return rows;
}

// What a load of tasks saw: right and wrong results, errors by SQLSTATE, the server backends.
struct Tally {
  int ok = 0;
  int wrong = 0;
  std::map<std::string, int> errors;
  std::set<int> pids;
};

// Five statement texts, each task starting at another one, so that the n-th statement a
// connection prepares differs between connections.
std::string statement(int task, int i) {
  return "SELECT $1::int + " + std::to_string((task + i) % 5) + ", pg_backend_pid()";
}
int expected(int task, int i) { return i + (task + i) % 5; }

Task<void> sequential(pg::Connection& c, int task, int n, Tally& t) {
  for (int i = 0; i < n; ++i) {
    try {
      auto row = co_await c.fetchrow(statement(task, i), i);
      if (row && row->get<int>(0) == expected(task, i)) {
        ++t.ok;
        t.pids.insert(row->get<int>(1));
      } else {
        ++t.wrong;
      }
    } catch (const pg::QueryError& e) {
      ++t.errors[e.sqlstate()];
    }
  }
}

// Rounds of one pipeline with `depth` statements each.
Task<void> pipelined(pg::Connection& c, int task, int rounds, int depth, Tally& t) {
  for (int r = 0; r < rounds; ++r) {
    std::vector<pg::Result> results;
    try {
      co_await async_with(c.pipeline(), [&](pg::Pipeline& p) -> Task<void> {
        for (int i = 0; i < depth; ++i) p.send(statement(task, r * depth + i), r * depth + i);
        results = co_await p.sync();
      });
    } catch (const pg::QueryError& e) {
      t.errors[e.sqlstate()] += depth;
      continue;
    }
    for (int i = 0; i < depth; ++i) {
      auto& res = results[static_cast<std::size_t>(i)];
      if (res.size() == 1 && res[0].get<int>(0) == expected(task, r * depth + i)) {
        ++t.ok;
        t.pids.insert(res[0].get<int>(1));
      } else {
        ++t.wrong;
      }
    }
  }
}

Task<void> many(pg::Connection& c, const std::string& table, int task, int rounds, int rows, Tally& t) {
  for (int r = 0; r < rounds; ++r) {
    try {
      co_await c.execute_many("INSERT INTO " + table + " VALUES ($1, pg_backend_pid())",
                              batch((task * rounds + r) * rows, rows));
      t.ok += rows;
    } catch (const pg::QueryError& e) {
      t.errors[e.sqlstate()] += rows;
    }
  }
}

enum class Load { sequential, pipelined, many };

// 10 tasks on an engine of 10 connections through the bouncer's 2 server connections.
Task<Tally> load(std::string dsn, std::size_t cache_size, Load kind, std::string table = "") {
  pg::PoolOptions options;
  options.size = 10;
  options.connection.statement_cache_size = cache_size;
  Tally t;
  co_await async_with(pg::create_engine(dsn, options), [&](pg::Engine& engine) -> Task<void> {
    std::vector<TaskHandle<void>> tasks;
    for (int task = 0; task < 10; ++task) {
      tasks.push_back(create_task([&, task]() -> Task<void> {
        co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
          switch (kind) {
            case Load::sequential: co_await sequential(c, task, 100, t); break;
            case Load::pipelined: co_await pipelined(c, task, 20, 5, t); break;
            case Load::many: co_await many(c, table, task, 10, 20, t); break;
          }
        });
      }));
    }
    co_await gather(tasks);
  });
  std::printf("cache %zu: ok %d, wrong %d, errors", cache_size, t.ok, t.wrong);
  for (auto& [sqlstate, n] : t.errors) std::printf(" %s x%d", sqlstate.c_str(), n);
  std::printf(", server backends %zu\n", t.pids.size());
  co_return t;
}

}  // namespace

TEST_F(PgBouncer, AMissingCachedStatementIsSentAgainUnnamedOutsideATransactionAndRaisedInsideOne) {
  run([&]() -> Task<void> {
    auto a = co_await connect(1024);
    auto b = co_await connect(1024);
    const int x = co_await pid_of(*a);  // prepared and run on X, the only server connection
    int y = 0;
    co_await async_with(b->transaction(), [&](pg::Connection& bt) -> Task<void> {
      // B holds X, where A's statement is prepared (and B's own, from now on).
      EXPECT_EQ(co_await bt.fetchval<std::int64_t>("SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", kPid), 1);
      EXPECT_EQ(co_await pid_of(bt), x);
      // A's statement is cached for X; the bouncer opens Y for A, which reports it missing: sent
      // again unnamed, it runs on Y.
      y = co_await pid_of(*a);
      EXPECT_NE(y, x);
      EXPECT_EQ(co_await pid_of(*a), y);  // prepared afresh, on Y
    });
    // X, released last, is A's next: in a transaction the statement cached for Y is missing there,
    // and the error has aborted the transaction, so it is raised.
    std::string sqlstate;
    auto status = pg::TransactionStatus::unknown;
    try {
      co_await async_with(a->transaction(), [&](pg::Connection& at) -> Task<void> {
        try {
          co_await pid_of(at);
        } catch (const pg::QueryError&) {
          status = at.transaction_status();
          throw;
        }
      });
    } catch (const pg::QueryError& e) {
      sqlstate = e.sqlstate();
    }
    EXPECT_EQ(sqlstate, "26000");
    EXPECT_EQ(status, pg::TransactionStatus::in_error);
    EXPECT_TRUE(a->reusable());
    EXPECT_EQ(co_await pid_of(*a), x);  // the entry was dropped: prepared afresh on X
    EXPECT_EQ(co_await pid_of(*a), x);
  }());
}

TEST_F(PgBouncer, APipelineMeetingAMissingCachedStatementFailsAndExecuteManyIsSentAgain) {
  run([&]() -> Task<void> {
    auto a = co_await connect(1024);
    auto b = co_await connect(1024);
    co_await recreate(*a, "bouncer_cached_many");
    const std::string insert = "INSERT INTO bouncer_cached_many VALUES ($1, pg_backend_pid())";
    auto pipeline_pid = [&]() -> Task<int> {
      std::vector<pg::Result> results;
      co_await async_with(a->pipeline(), [&](pg::Pipeline& p) -> Task<void> {
        p.send("SELECT pg_backend_pid() + $1::int", 0);
        results = co_await p.sync();
      });
      co_return results.at(0)[0].get<int>(0);
    };
    const int x = co_await pipeline_pid();  // prepared in the pipeline itself, on X
    int y = 0;
    co_await async_with(b->transaction(), [&](pg::Connection& bt) -> Task<void> {
      EXPECT_EQ(co_await pid_of(bt), x);
      // On Y the cached statement is missing: the pipeline fails (a pipeline is not sent again),
      // the entry leaves the cache, and the next pipeline prepares it in itself.
      std::string sqlstate;
      try {
        co_await pipeline_pid();
      } catch (const pg::QueryError& e) {
        sqlstate = e.sqlstate();
      }
      EXPECT_EQ(sqlstate, "26000");
      EXPECT_TRUE(a->reusable());
      y = co_await pipeline_pid();
      EXPECT_NE(y, x);
      co_await a->execute_many(insert, batch(0, 50));  // prepared in the batch, on Y
    });
    // On X the batch's cached statement is missing: none of the batch ran, so it is sent again.
    co_await a->execute_many(insert, batch(50, 50));
    co_await a->execute_many(insert, batch(100, 50));  // prepared afresh, on X
    // In a transaction on Y the statement cached for X is missing: raised, nothing inserted.
    co_await async_with(b->transaction(), [&](pg::Connection& bt) -> Task<void> {
      EXPECT_EQ(co_await pid_of(bt), x);
      std::string sqlstate;
      try {
        co_await async_with(a->transaction(), [&](pg::Connection& at) -> Task<void> {
          co_await at.execute_many(insert, batch(150, 50));
        });
      } catch (const pg::QueryError& e) {
        sqlstate = e.sqlstate();
      }
      EXPECT_EQ(sqlstate, "26000");
    });
    auto r = co_await a->fetch("SELECT v / 50, count(*), count(DISTINCT v), min(pid), max(pid) "
                               "FROM bouncer_cached_many GROUP BY 1 ORDER BY 1");
    AWITH_CO_ASSERT(r.size() == 3u);
    const int pids[] = {y, x, x};
    for (int i = 0; i < 3; ++i) {
      auto row = r[static_cast<std::size_t>(i)];
      EXPECT_EQ(row.get<int>(0), i);
      EXPECT_EQ(row.get<std::int64_t>(1), 50);  // every row once
      EXPECT_EQ(row.get<std::int64_t>(2), 50);
      EXPECT_EQ(row.get<int>(3), pids[i]);
      EXPECT_EQ(row.get<int>(4), pids[i]);
    }
    co_await a->execute("DROP TABLE bouncer_cached_many");
  }());
}

TEST_F(PgBouncer, WithoutTheCacheNothingIsPreparedAndNothingIsMissing) {
  run([&]() -> Task<void> {
    auto a = co_await connect(0);
    auto b = co_await connect(0);
    co_await recreate(*a, "bouncer_unnamed");
    const std::string insert = "INSERT INTO bouncer_unnamed VALUES ($1, pg_backend_pid())";
    const int x = co_await pid_of(*a);
    co_await a->execute_many(insert, batch(0, 50));
    co_await async_with(b->transaction(), [&](pg::Connection& bt) -> Task<void> {
      EXPECT_EQ(co_await pid_of(bt), x);
      EXPECT_EQ(co_await bt.fetchval<std::int64_t>("SELECT count(*) FROM pg_prepared_statements"), 0);
      const int y = co_await pid_of(*a);
      EXPECT_NE(y, x);
      std::vector<pg::Result> results;
      co_await async_with(a->pipeline(), [&](pg::Pipeline& p) -> Task<void> {
        p.send(kPid);
        p.send("SELECT $1::int * 2", 21);
        results = co_await p.sync();
      });
      AWITH_CO_ASSERT(results.size() == 2u);
      EXPECT_EQ(results[0][0].get<int>(0), y);
      EXPECT_EQ(results[1][0].get<int>(0), 42);
      co_await a->execute_many(insert, batch(50, 50));
      // In a transaction too: nothing to miss.
      co_await async_with(a->transaction(), [&](pg::Connection& at) -> Task<void> {
        EXPECT_EQ(co_await pid_of(at), y);
        co_await at.execute_many(insert, batch(100, 50));
      });
    });
    EXPECT_EQ(co_await a->fetchval<std::int64_t>("SELECT count(DISTINCT v) FROM bouncer_unnamed"), 150);
    EXPECT_EQ(co_await a->fetchval<std::int64_t>("SELECT count(*) FROM bouncer_unnamed"), 150);
    co_await a->execute("DROP TABLE bouncer_unnamed");
  }());
}

TEST_F(PgBouncer, TenTasksOfSequentialStatementsWithTheCacheSucceedThroughTheRetry) {
  run([&]() -> Task<void> {
    auto t = co_await load(bouncer_dsn(), 1024, Load::sequential);
    EXPECT_EQ(t.ok, 1000);
    EXPECT_EQ(t.wrong, 0);
    EXPECT_TRUE(t.errors.empty());
    EXPECT_EQ(t.pids.size(), 2u);  // both server connections served the tasks
  }());
}

TEST_F(PgBouncer, TenTasksOfPipelinesWithTheCacheFailOnlyOnMissingStatements) {
  run([&]() -> Task<void> {
    auto t = co_await load(bouncer_dsn(), 1024, Load::pipelined);
    // A failed pipeline reports 26000 for its 5 statements; every other result is right.
    const int missing = t.errors["26000"];
    t.errors.erase("26000");
    EXPECT_TRUE(t.errors.empty());
    EXPECT_EQ(t.ok + missing, 1000);
    EXPECT_EQ(missing % 5, 0);
    EXPECT_EQ(t.wrong, 0);
  }());
}

TEST_F(PgBouncer, TenTasksOfExecuteManyWithTheCacheSucceedThroughTheRetry) {
  run([&]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await recreate(*admin, "bouncer_load_cached");
    auto t = co_await load(bouncer_dsn(), 1024, Load::many, "bouncer_load_cached");
    EXPECT_EQ(t.ok, 2000);
    EXPECT_TRUE(t.errors.empty());
    EXPECT_EQ(co_await admin->fetchval<std::int64_t>("SELECT count(*) FROM bouncer_load_cached"), 2000);
    EXPECT_EQ(co_await admin->fetchval<std::int64_t>("SELECT count(DISTINCT v) FROM bouncer_load_cached"), 2000);
    EXPECT_EQ(co_await admin->fetchval<std::int64_t>("SELECT count(DISTINCT pid) FROM bouncer_load_cached"), 2);
    co_await admin->execute("DROP TABLE bouncer_load_cached");
  }());
}

TEST_F(PgBouncer, TenTasksWithoutTheCacheHaveNoErrorsSequentialPipelinedOrExecuteMany) {
  run([&]() -> Task<void> {
    auto seq = co_await load(bouncer_dsn(), 0, Load::sequential);
    EXPECT_EQ(seq.ok, 1000);
    EXPECT_EQ(seq.wrong, 0);
    EXPECT_TRUE(seq.errors.empty());
    EXPECT_EQ(seq.pids.size(), 2u);
    auto pipe = co_await load(bouncer_dsn(), 0, Load::pipelined);
    EXPECT_EQ(pipe.ok, 1000);
    EXPECT_EQ(pipe.wrong, 0);
    EXPECT_TRUE(pipe.errors.empty());
    auto admin = co_await pg::Connection::connect(test::pg_dsn());
    co_await recreate(*admin, "bouncer_load_unnamed");
    auto many_tally = co_await load(bouncer_dsn(), 0, Load::many, "bouncer_load_unnamed");
    EXPECT_EQ(many_tally.ok, 2000);
    EXPECT_TRUE(many_tally.errors.empty());
    EXPECT_EQ(co_await admin->fetchval<std::int64_t>("SELECT count(DISTINCT v) FROM bouncer_load_unnamed"), 2000);
    EXPECT_EQ(co_await admin->fetchval<std::int64_t>("SELECT count(*) FROM bouncer_load_unnamed"), 2000);
    co_await admin->execute("DROP TABLE bouncer_load_unnamed");
  }());
}
