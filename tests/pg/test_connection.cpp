// awith::pg::Connection against a real PostgreSQL: typed results, bound parameters, typed errors,
// NULLs, large results, savepoints, pipelines, and a cancelled statement that leaves the
// connection usable.
#include <gtest/gtest.h>

#include <cstdio>

#include "awith/awith.hpp"
#include "awith/context.hpp"
#include "awith/pg/connection.hpp"
#include "awith/timeout.hpp"
#include "pg/pg_cluster.hpp"
#include "support/sockets.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {
Task<std::unique_ptr<pg::Connection>> connect(const std::string& app = "awith_test_conn") {
  co_return co_await pg::Connection::connect(test::pg_dsn_for(app));
}
}  // namespace

TEST(PgConnection, TypedValuesByIndexAndNameWithNullAsOptional) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    auto r = co_await conn->fetch(
        "SELECT 42::int8 AS answer, 'text'::text AS word, NULL::int AS nothing, true AS yes, 2.5::float8 AS half");
    AWITH_CO_ASSERT(r.size() == 1u);
    EXPECT_EQ(r.columns(), 5);
    auto row = r[0];
    EXPECT_EQ(row.get<std::int64_t>(0), 42);
    EXPECT_EQ(row.get<std::int32_t>("answer"), 42);
    EXPECT_EQ(row.get<std::string>("word"), "text");
    EXPECT_EQ(row.get<std::optional<int>>("nothing"), std::nullopt);
    EXPECT_EQ(row.get<std::optional<std::int64_t>>(0), 42);
    EXPECT_TRUE(row.get<bool>("yes"));
    EXPECT_DOUBLE_EQ(row.get<double>("half"), 2.5);
    EXPECT_THROW(row.get<int>("nothing"), pg::InterfaceError);
    EXPECT_THROW(row.get<int>("word"), pg::InterfaceError);
    EXPECT_THROW(row.get<int>("no_such_column"), pg::InterfaceError);
    EXPECT_THROW(row.get<int>(7), pg::InterfaceError);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT $1::int8 + $2::int8", 40, 2), 42);
    EXPECT_EQ(co_await conn->fetchval<std::optional<int>>("SELECT 1 WHERE false"), std::nullopt);
    EXPECT_THROW(co_await conn->fetchval<int>("SELECT 1 WHERE false"), pg::InterfaceError);
    auto none = co_await conn->fetchrow("SELECT 1 WHERE $1", false);
    EXPECT_FALSE(none.has_value());
    auto one = co_await conn->fetchrow("SELECT $1::text AS v", std::optional<std::string>());
    AWITH_CO_ASSERT(one.has_value());
    EXPECT_TRUE(one->is_null(0));
  }());
}

TEST(PgConnection, ParametersAreBoundNeverInterpolated) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    co_await conn->execute("CREATE TEMP TABLE t (id int, v text)");
    std::string hostile = "x'); DROP TABLE t; --";
    auto ins = co_await conn->execute("INSERT INTO t VALUES ($1, $2), ($3, $4)", 1, hostile, 2, "plain");
    EXPECT_EQ(ins.command_tag(), "INSERT 0 2");
    EXPECT_EQ(ins.rows_affected(), 2);
    EXPECT_EQ(co_await conn->fetchval<std::string>("SELECT v FROM t WHERE id = $1", 1), hostile);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT count(*) FROM t"), 2);
    // A NUL byte cannot be sent in text format: refused on the client, not truncated.
    EXPECT_THROW(co_await conn->execute("SELECT $1::text", std::string("a\0b", 3)), pg::InterfaceError);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT count(*) FROM t"), 2);
  }());
}

TEST(PgConnection, SqlErrorsCarrySqlstateDetailAndStatementAndTheConnectionStaysUsable) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    try {
      co_await conn->execute("SELEC 1");
      ADD_FAILURE() << "no error";
    } catch (const pg::QueryError& e) {
      EXPECT_EQ(e.sqlstate(), "42601");
      EXPECT_EQ(e.statement(), "SELEC 1");
      EXPECT_EQ(e.position(), 1);
      EXPECT_NE(std::string(e.what()).find("syntax error"), std::string::npos);
    }
    try {
      co_await conn->execute("SELECT * FROM no_such_table");
      ADD_FAILURE() << "no error";
    } catch (const pg::QueryError& e) {
      EXPECT_EQ(e.sqlstate(), "42P01");
    }
    co_await conn->execute("CREATE TEMP TABLE u (id int PRIMARY KEY)");
    co_await conn->execute("INSERT INTO u VALUES ($1)", 1);
    try {
      co_await conn->execute("INSERT INTO u VALUES ($1)", 1);
      ADD_FAILURE() << "no error";
    } catch (const pg::QueryError& e) {
      EXPECT_EQ(e.sqlstate(), "23505");
      EXPECT_EQ(e.detail(), "Key (id)=(1) already exists.");
    }
    EXPECT_EQ(co_await conn->fetchval<int>("SELECT 1"), 1);
    EXPECT_TRUE(conn->reusable());
  }());
}

TEST(PgConnection, BadParametersGiveTypedErrors) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    try {
      co_await conn->execute("SELECT $1::int", "not a number");
      ADD_FAILURE() << "no error";
    } catch (const pg::QueryError& e) {
      EXPECT_EQ(e.sqlstate(), "22P02");
    }
    try {
      co_await conn->execute("SELECT $1::int + $2::int", 1);
      ADD_FAILURE() << "no error";
    } catch (const pg::QueryError& e) {
      EXPECT_EQ(e.sqlstate(), "08P01");  // bind message supplies 1 parameters, but ... requires 2
    }
    EXPECT_EQ(co_await conn->fetchval<int>("SELECT $1::int", 7), 7);
  }());
}

TEST(PgConnection, HundredThousandRows) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    auto r = co_await conn->fetch("SELECT g, 'row ' || g AS label FROM generate_series(1, $1::int) g", 100000);
    AWITH_CO_ASSERT(r.size() == 100000u);
    std::int64_t sum = 0;
    for (auto row : r) sum += row.get<std::int64_t>(0);
    EXPECT_EQ(sum, 100000LL * 100001 / 2);
    EXPECT_EQ(r[99999].get<std::string>("label"), "row 100000");
    EXPECT_EQ(r.rows_affected(), 100000);
  }());
}

TEST(PgConnection, ConnectionRefusedAndAuthenticationFailureAreDistinct) {
  run([]() -> Task<void> {
    EXPECT_THROW(co_await pg::Connection::connect("host=127.0.0.1 port=1 user=postgres connect_timeout=5"),
                 pg::ConnectError);
    try {
      co_await pg::Connection::connect(test::pg_dsn() + " user=no_such_role");
      ADD_FAILURE() << "connected";
    } catch (const pg::AuthenticationError& e) {
      EXPECT_NE(std::string(e.what()).find("no_such_role"), std::string::npos);
    }
    EXPECT_THROW(co_await pg::Connection::connect("host=no-such-host.invalid port=5432"), pg::ConnectError);
    EXPECT_THROW(co_await pg::Connection::connect("port=notaport==="), pg::ConnectError);
    // A host name is resolved off the loop and works like the address.
    auto conn = co_await pg::Connection::connect(test::pg_dsn() + " host=localhost");
    EXPECT_EQ(co_await conn->fetchval<int>("SELECT 1"), 1);
  }());
}

namespace {
// A value of the test cluster's DSN ("port" -> "5433").
std::string dsn_value(const std::string& key) {
  const std::string& dsn = test::pg_dsn();
  auto at = dsn.find(key + "=");
  if (at == std::string::npos) return {};
  at += key.size() + 1;
  return dsn.substr(at, dsn.find(' ', at) - at);
}

long long ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
}  // namespace

// libpq ignores connect_timeout in non-blocking mode; Connection::connect enforces it per address
// attempt, and its `timeout` argument bounds the whole connect. Both raise ConnectError naming
// the bound. A black hole (tests/support/sockets.hpp) never answers the SYN.
TEST(PgConnection, ConnectTimeoutBoundsAnAttemptAtABlackHole) {
  test::BlackHole hole;
  run([&]() -> Task<void> {
    const std::string target = "host=127.0.0.1 port=" + std::to_string(hole.port()) + " user=postgres";
    const std::string with_timeout = target + " connect_timeout=1";
    auto start = EventLoop::running().time();
    try {
      co_await pg::Connection::connect(with_timeout);
      ADD_FAILURE() << "connected to a black hole";
    } catch (const pg::ConnectError& e) {
      EXPECT_TRUE(contains(e.what(), "connect_timeout=1 s")) << e.what();
      EXPECT_TRUE(contains(e.what(), std::to_string(hole.port()))) << e.what();
    }
    auto elapsed = EventLoop::running().time() - start;
    std::printf("connect_timeout=1 at a black hole: ConnectError after %lld ms\n", ms(elapsed));
    EXPECT_GE(elapsed, 900ms);
    EXPECT_LT(elapsed, 2s);
    start = EventLoop::running().time();
    pg::ConnectOptions bounded;
    bounded.timeout = 300ms;
    try {
      co_await pg::Connection::connect(target, bounded);
      ADD_FAILURE() << "connected to a black hole";
    } catch (const pg::ConnectError& e) {
      EXPECT_TRUE(contains(e.what(), "300 ms")) << e.what();
    }
    elapsed = EventLoop::running().time() - start;
    EXPECT_GE(elapsed, 300ms);
    EXPECT_LT(elapsed, 1s);
  }());
}

// A host name becomes one libpq entry per address (here a name given twice, once per port): the
// attempt at the black hole is cut at connect_timeout and libpq goes on to the next entry.
TEST(PgConnection, HostNamesBecomeAnEntryPerAddressAndABlackHoledOneIsPassed) {
  test::BlackHole hole;
  run([&]() -> Task<void> {
    const std::string dsn = test::pg_dsn() + " host=localhost,localhost port=" + std::to_string(hole.port()) + "," +
                            dsn_value("port") + " connect_timeout=1";
    auto start = EventLoop::running().time();
    auto conn = co_await pg::Connection::connect(dsn);
    auto elapsed = EventLoop::running().time() - start;
    std::printf("black-holed first entry, connect_timeout=1: connected through the second after %lld ms\n",
                ms(elapsed));
    EXPECT_GE(elapsed, 900ms);
    EXPECT_LT(elapsed, 3s);
    EXPECT_EQ(co_await conn->fetchval<std::string>("SELECT host(inet_server_addr())"), "127.0.0.1");
    // "localhost" on its own: every address it resolves to is tried (::1 first on many hosts,
    // where this cluster does not listen).
    auto plain = co_await pg::Connection::connect(test::pg_dsn() + " host=localhost");
    EXPECT_EQ(co_await plain->fetchval<int>("SELECT 1"), 1);
  }());
}

TEST(PgConnection, UnresolvableHostNameIsNamedInTheConnectError) {
  run([&]() -> Task<void> {
    try {
      co_await pg::Connection::connect("host=no-such-host.invalid port=5432 user=postgres");
      ADD_FAILURE() << "connected";
    } catch (const pg::ConnectError& e) {
      EXPECT_TRUE(contains(e.what(), "could not translate host name \"no-such-host.invalid\"")) << e.what();
    }
    // In a host list a name that does not resolve is skipped, as libpq skips it.
    auto conn = co_await pg::Connection::connect(test::pg_dsn() + " host=no-such-host.invalid,127.0.0.1");
    EXPECT_EQ(co_await conn->fetchval<int>("SELECT 1"), 1);
  }());
}

TEST(PgConnection, TransactionsNestAsSavepoints) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    co_await conn->execute("CREATE TEMP TABLE n (v int)");
    co_await async_with(conn->transaction(), [&](pg::Connection& c) -> Task<void> {
      co_await c.execute("INSERT INTO n VALUES (1)");
      EXPECT_THROW(co_await async_with(c.transaction(), [&](pg::Connection& inner) -> Task<void> {
        co_await inner.execute("INSERT INTO n VALUES (2)");
        throw std::runtime_error("inner fails");
      }), std::runtime_error);
      co_await async_with(c.transaction(), [&](pg::Connection& inner) -> Task<void> {
        co_await inner.execute("INSERT INTO n VALUES (3)");
      });
      EXPECT_TRUE(c.in_transaction());
    });
    EXPECT_FALSE(conn->in_transaction());
    auto r = co_await conn->fetch("SELECT v FROM n ORDER BY v");
    AWITH_CO_ASSERT(r.size() == 2u);
    EXPECT_EQ(r[0].get<int>(0), 1);
    EXPECT_EQ(r[1].get<int>(0), 3);
    // A failed transaction is rolled back and the scope says so instead of "committing".
    EXPECT_THROW(co_await async_with(conn->transaction(), [&](pg::Connection& c) -> Task<void> {
      co_await c.execute("INSERT INTO n VALUES (4)");
      EXPECT_THROW(co_await c.execute("SELECT 1/0"), pg::QueryError);
    }), pg::InterfaceError);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT count(*) FROM n"), 2);
    EXPECT_TRUE(conn->reusable());
  }());
}

TEST(PgConnection, PipelineSendsManyStatementsBeforeReading) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    co_await conn->execute("CREATE TEMP TABLE p (v int)");
    std::vector<pg::Result> results;
    co_await async_with(conn->pipeline(), [&](pg::Pipeline& p) -> Task<void> {
      for (int i = 0; i < 100; ++i) p.send("INSERT INTO p VALUES ($1)", i);
      p.send("SELECT sum(v) FROM p");
      EXPECT_EQ(p.queued(), 101u);
      results = co_await p.sync();
    });
    AWITH_CO_ASSERT(results.size() == 101u);
    EXPECT_EQ(results[0].command_tag(), "INSERT 0 1");
    EXPECT_EQ(results[100][0].get<std::int64_t>(0), 4950);
    // An error aborts the rest of the pipeline up to the sync; the connection stays usable.
    EXPECT_THROW(co_await async_with(conn->pipeline(), [&](pg::Pipeline& p) -> Task<void> {
      p.send("INSERT INTO p VALUES ($1)", 1000);
      p.send("SELECT 1/0");
      p.send("INSERT INTO p VALUES ($1)", 1001);
      co_await p.sync();
    }), pg::QueryError);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT count(*) FROM p"), 100);  // the statements before the error were rolled back with it
    EXPECT_TRUE(conn->reusable());
  }());
}

TEST(PgConnection, ExecuteManyIsPipelined) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    co_await conn->execute("CREATE TEMP TABLE m (id int, label text)");
    std::vector<pg::Params> rows;
    for (int i = 0; i < 20000; ++i) rows.push_back(pg::make_params(i, "label number " + std::to_string(i)));
    co_await conn->execute_many("INSERT INTO m VALUES ($1, $2)", rows);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT count(*) FROM m"), 20000);
    std::vector<pg::Params> bad;
    bad.push_back(pg::make_params(1, "x"));
    bad.push_back(pg::make_params("bad", "y"));
    EXPECT_THROW(co_await conn->execute_many("INSERT INTO m VALUES ($1, $2)", bad), pg::QueryError);
    EXPECT_EQ(co_await conn->fetchval<std::int64_t>("SELECT count(*) FROM m"), 20000);  // one implicit transaction
    EXPECT_TRUE(conn->reusable());
  }());
}

TEST(PgConnection, CancelledStatementIsCancelledOnTheServerAndTheConnectionRecovers) {
  run([]() -> Task<void> {
    auto conn = co_await connect("awith_test_cancel_conn");
    auto admin = co_await connect("awith_test_admin");
    int pid = conn->backend_pid();
    auto start = EventLoop::running().time();
    EXPECT_THROW(co_await async_with(timeout(100ms), [&]() -> Task<void> {
      co_await conn->execute("SELECT pg_sleep(30)");
    }), TimeoutError);
    EXPECT_FALSE(conn->reusable());  // unread: never handed on like this
    EXPECT_EQ(co_await conn->fetchval<int>("SELECT 5"), 5);  // recovered: cancel request + drain
    EXPECT_LT(EventLoop::running().time() - start, 5s);
    EXPECT_EQ(co_await admin->fetchval<std::string>("SELECT state FROM pg_stat_activity WHERE pid = $1", pid), "idle");
  }());
}

TEST(PgConnection, ASecondTaskUsingTheConnectionMeanwhileGetsAClearError) {
  run([]() -> Task<void> {
    auto conn = co_await connect();
    auto first = create_task([&]() -> Task<int> { co_return co_await conn->fetchval<int>("SELECT 1 FROM pg_sleep(0.05)"); });
    co_await sleep(10ms);
    EXPECT_THROW(co_await conn->execute("SELECT 2"), pg::InterfaceError);
    EXPECT_EQ(co_await first, 1);  // undisturbed
    EXPECT_EQ(co_await conn->fetchval<int>("SELECT 3"), 3);
  }());
}

namespace {
Task<std::int64_t> prepared_count(pg::Connection& c) {
  co_return co_await c.fetchval<std::int64_t>("SELECT count(*) FROM pg_prepared_statements");
}
}  // namespace

TEST(PgConnection, StatementCacheSizeBoundsWhatIsPreparedAndZeroPreparesNothing) {
  run([]() -> Task<void> {
    pg::ConnectOptions none, two;
    none.statement_cache_size = 0;
    two.statement_cache_size = 2;
    auto unnamed = co_await pg::Connection::connect(test::pg_dsn_for("awith_test_cache"), none);
    auto small = co_await pg::Connection::connect(test::pg_dsn_for("awith_test_cache"), two);
    auto full = co_await connect("awith_test_cache");
    for (int k = 0; k < 4; ++k) {
      const std::string sql = "SELECT $1::int + " + std::to_string(k);
      for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(co_await unnamed->fetchval<int>(sql, i), i + k);
        EXPECT_EQ(co_await small->fetchval<int>(sql, i), i + k);
        EXPECT_EQ(co_await full->fetchval<int>(sql, i), i + k);
      }
    }
    co_await unnamed->execute("CREATE TEMP TABLE c (v int)");
    std::vector<pg::Params> rows;
    for (int i = 0; i < 100; ++i) rows.push_back(pg::make_params(i));
    co_await unnamed->execute_many("INSERT INTO c VALUES ($1)", rows);
    std::vector<pg::Result> results;
    co_await async_with(unnamed->pipeline(), [&](pg::Pipeline& p) -> Task<void> {
      p.send("SELECT count(*) FROM c");
      p.send("SELECT sum(v) FROM c WHERE v < $1", 10);
      results = co_await p.sync();
    });
    AWITH_CO_ASSERT(results.size() == 2u);
    EXPECT_EQ(results[0][0].get<std::int64_t>(0), 100);
    EXPECT_EQ(results[1][0].get<std::int64_t>(0), 45);
    EXPECT_EQ(co_await prepared_count(*unnamed), 0);  // statements, execute_many and pipeline alike
    EXPECT_EQ(co_await prepared_count(*small), 2);    // the first two; the rest (this count too) unnamed
    EXPECT_EQ(co_await prepared_count(*full), 5);     // four and the count itself
    // Each connection names its statements apart from every other client's.
    auto a = co_await small->fetchval<std::string>("SELECT min(name) FROM pg_prepared_statements");
    auto b = co_await full->fetchval<std::string>("SELECT min(name) FROM pg_prepared_statements");
    EXPECT_EQ(a.rfind("awith_", 0), 0u);
    EXPECT_EQ(a.size(), b.size());
    EXPECT_NE(a, b);
  }());
}

// DEALLOCATE ALL takes a cached statement away as a transaction pooler's next server connection
// would: outside a transaction it is sent again unnamed, inside one the error is raised.
TEST(PgConnection, ACachedStatementMissingOnTheServerIsSentAgainOutsideATransactionOnly) {
  run([]() -> Task<void> {
    pg::ConnectOptions one;
    one.statement_cache_size = 1;
    auto conn = co_await pg::Connection::connect(test::pg_dsn_for("awith_test_missing"), one);
    const std::string sql = "SELECT $1::int * 2";
    EXPECT_EQ(co_await conn->fetchval<int>(sql, 1), 2);  // prepared: the cache is full
    co_await conn->execute("DEALLOCATE ALL");           // unnamed
    EXPECT_EQ(co_await prepared_count(*conn), 0);
    EXPECT_EQ(co_await conn->fetchval<int>(sql, 2), 4);  // missing: sent again unnamed
    EXPECT_EQ(co_await conn->fetchval<int>(sql, 3), 6);  // prepared afresh
    EXPECT_EQ(co_await prepared_count(*conn), 1);
    std::string sqlstate;
    auto status = pg::TransactionStatus::unknown;
    try {
      co_await async_with(conn->transaction(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("DEALLOCATE ALL");
        try {
          co_await c.fetchval<int>(sql, 4);
        } catch (const pg::QueryError&) {
          status = c.transaction_status();
          throw;
        }
      });
    } catch (const pg::QueryError& e) {
      sqlstate = e.sqlstate();
    }
    EXPECT_EQ(sqlstate, "26000");
    EXPECT_EQ(status, pg::TransactionStatus::in_error);
    EXPECT_EQ(co_await conn->fetchval<int>(sql, 5), 10);  // the entry was dropped: prepared afresh
    EXPECT_EQ(co_await prepared_count(*conn), 1);
    EXPECT_TRUE(conn->reusable());
    // A 26000 of the statement's own (EXECUTE of a name that does not exist) keeps it cached:
    // prepared once for both runs.
    auto other = co_await connect("awith_test_missing");
    EXPECT_EQ(co_await prepared_count(*other), 1);
    for (int i = 0; i < 2; ++i) {
      try {
        co_await other->execute("EXECUTE no_such_statement");
        ADD_FAILURE() << "no error";
      } catch (const pg::QueryError& e) {
        EXPECT_EQ(e.sqlstate(), "26000");
      }
    }
    EXPECT_EQ(co_await prepared_count(*other), 2);
  }());
}
