// awith::pg::Engine against a real PostgreSQL: transaction scopes, the pool's FIFO and acquire
// timeout, 100 concurrent tasks, cancellation at every await point of begin() + queries + commit
// (checked through pg_stat_activity and pg_locks), a server restart, dispose.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "awith/awith.hpp"
#include "awith/context.hpp"
#include "awith/pg/engine.hpp"
#include "awith/timeout.hpp"
#include "pg/pg_cluster.hpp"

using namespace awith;
using namespace std::chrono_literals;

namespace {

// Polls (bounded) until no backend of `app` is inside a transaction, running a statement or
// holding a lock; backends of closed connections take a moment to exit.
Task<void> expect_clean(pg::Connection& admin, const std::string& app) {
  std::int64_t busy = -1, locks = -1;
  for (int i = 0; i < 100; ++i) {
    busy = co_await admin.fetchval<std::int64_t>(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'", app);
    locks = co_await admin.fetchval<std::int64_t>(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = $1 AND l.locktype IN ('relation', 'tuple', 'transactionid')",
        app);
    if (busy == 0 && locks == 0) co_return;
    co_await sleep(20ms);
  }
  ADD_FAILURE() << app << ": " << busy << " backends not idle, " << locks << " locks held";
}

}  // namespace

TEST(PgEngine, BeginCommitsOnSuccessAndRollsBackOnException) {
  run([]() -> Task<void> {
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_begin")), [&](pg::Engine& engine) -> Task<void> {
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("DROP TABLE IF EXISTS begin_t");
        co_await c.execute("CREATE TABLE begin_t (v int)");
      });
      co_await async_with(engine.begin(), [&](pg::Connection& c) -> Task<void> {
        EXPECT_TRUE(c.in_transaction());
        co_await c.execute("INSERT INTO begin_t VALUES (1)");
      });
      EXPECT_THROW(co_await async_with(engine.begin(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("INSERT INTO begin_t VALUES (2)");
        throw std::runtime_error("body fails");
      }), std::runtime_error);
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
        EXPECT_EQ(co_await c.fetchval<std::int64_t>("SELECT count(*) FROM begin_t"), 1);
        EXPECT_FALSE(c.in_transaction());
        co_await c.execute("DROP TABLE begin_t");
      });
      EXPECT_EQ(engine.status().checked_out, 0u);
      EXPECT_EQ(engine.status().open, 1u);  // one connection, reused by every scope
    });
  }());
}

TEST(PgEngine, PoolWaitersAreServedFifoAndTheAcquireTimeoutHolds) {
  run([]() -> Task<void> {
    pg::PoolOptions opts;
    opts.size = 1;
    opts.acquire_timeout = 300ms;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_fifo"), opts), [&](pg::Engine& engine) -> Task<void> {
      std::vector<int> order;
      auto holder = create_task([&]() -> Task<void> {
        co_await async_with(engine.connect(), [&]() -> Task<void> { co_await sleep(100ms); });
      });
      co_await sleep(10ms);
      std::vector<TaskHandle<void>> waiters;
      for (int i = 0; i < 4; ++i) {
        waiters.push_back(create_task([&, i]() -> Task<void> {
          co_await async_with(engine.connect(), [&]() -> Task<void> {
            order.push_back(i);
            co_await sleep(5ms);
          });
        }));
      }
      co_await holder;
      for (auto& w : waiters) co_await w;
      EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));

      auto long_holder = create_task([&]() -> Task<void> {
        co_await async_with(engine.connect(), [&]() -> Task<void> { co_await sleep(5s); });
      });
      co_await sleep(10ms);
      auto start = EventLoop::running().time();
      EXPECT_THROW(co_await async_with(engine.connect(), [&]() -> Task<void> { co_return; }), pg::PoolTimeoutError);
      auto waited = EventLoop::running().time() - start;
      EXPECT_GE(waited, 300ms);
      EXPECT_LT(waited, 2s);
      long_holder.cancel();
      EXPECT_THROW(co_await long_holder, CancelledError);
      EXPECT_EQ(engine.status().checked_out, 0u);
    });
  }());
}

TEST(PgEngine, AWaiterCancelledInTheQueueLeavesThePoolIntact) {
  run([]() -> Task<void> {
    pg::PoolOptions opts;
    opts.size = 1;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_queue_cancel"), opts), [&](pg::Engine& engine) -> Task<void> {
      auto holder = create_task([&]() -> Task<void> {
        co_await async_with(engine.connect(), [&]() -> Task<void> { co_await sleep(50ms); });
      });
      co_await sleep(5ms);
      auto impatient = create_task([&]() -> Task<void> {
        co_await async_with(engine.connect(), [&]() -> Task<void> { co_return; });
      });
      bool served = false;
      auto patient = create_task([&]() -> Task<void> {
        co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
          served = co_await c.fetchval<int>("SELECT 1") == 1;
        });
      });
      co_await sleep(5ms);
      impatient.cancel();
      EXPECT_THROW(co_await impatient, CancelledError);
      co_await holder;
      co_await patient;
      EXPECT_TRUE(served);
      EXPECT_EQ(engine.status().checked_out, 0u);
      EXPECT_EQ(engine.status().open, 1u);
    });
  }());
}

TEST(PgEngine, MaxLifetimeMaxIdleAndPrePingReplaceConnections) {
  run([]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn_for("awith_test_admin"));
    auto pid_of = [](pg::Engine& engine) -> Task<int> {
      co_return co_await async_with(engine.connect(), [](pg::Connection& c) -> Task<int> {
        co_return co_await c.fetchval<int>("SELECT pg_backend_pid()");
      });
    };
    // A lifetime long enough that a loaded sanitizer build still reuses the connection before it
    // expires, and that the replacement is not expired again by the time it is given back.
    pg::PoolOptions lifetime;
    lifetime.max_lifetime = 500ms;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_lifetime"), lifetime), [&](pg::Engine& e) -> Task<void> {
      int first = co_await pid_of(e);
      EXPECT_EQ(co_await pid_of(e), first);
      co_await sleep(550ms);
      EXPECT_NE(co_await pid_of(e), first);
      EXPECT_EQ(e.status().open, 1u);
    });
    pg::PoolOptions idle;
    idle.max_idle = 50ms;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_idle"), idle), [&](pg::Engine& e) -> Task<void> {
      int first = co_await pid_of(e);
      co_await sleep(60ms);
      EXPECT_NE(co_await pid_of(e), first);
    });
    pg::PoolOptions ping;
    ping.pre_ping = true;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_preping"), ping), [&](pg::Engine& e) -> Task<void> {
      int first = co_await pid_of(e);
      EXPECT_TRUE(co_await admin->fetchval<bool>("SELECT pg_terminate_backend($1)", first));
      EXPECT_NE(co_await pid_of(e), first);  // the dead connection is replaced, not handed out
      EXPECT_EQ(e.status().open, 1u);
    });
  }());
}

// A borrower cancelled while the pre-ping of its idle connection is in flight: the connection,
// which may still owe the ping's reply, is closed and no longer counted, so the pool's books match
// what it holds and it goes on serving.
TEST(PgEngine, ABorrowerCancelledDuringThePrePingLeavesThePoolCountRight) {
  run([]() -> Task<void> {
    pg::PoolOptions ping;
    ping.pre_ping = true;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_preping_cancel"), ping), [&](pg::Engine& e) -> Task<void> {
      for (int round = 0; round < 3; ++round) {
        co_await async_with(e.connect(), [](pg::Connection& c) -> Task<void> { co_await c.execute("SELECT 1"); });
        AWITH_CO_ASSERT(e.status().idle == 1u);
        bool reached_body = false;
        auto borrower = create_task([&]() -> Task<void> {
          co_await async_with(e.connect(), [&](pg::Connection&) -> Task<void> {
            reached_body = true;
            co_return;
          });
        });
        co_await sleep(0);  // the borrower took the idle connection and waits for the ping's reply
        borrower.cancel();
        EXPECT_THROW(co_await borrower, CancelledError);
        EXPECT_FALSE(reached_body);
        auto status = e.status();
        EXPECT_EQ(status.checked_out, 0u);
        EXPECT_EQ(status.open, status.idle + status.checked_out) << "round " << round;
      }
      EXPECT_EQ(co_await async_with(e.connect(), [](pg::Connection& c) -> Task<int> {
                  co_return co_await c.fetchval<int>("SELECT 7");
                }),
                7);
      EXPECT_EQ(e.status().open, 1u);
    });
  }());
}

TEST(PgEngine, HundredConcurrentTasks) {
  run([]() -> Task<void> {
    pg::PoolOptions opts;
    opts.size = 10;
    opts.max_overflow = 5;
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_hundred"), opts), [&](pg::Engine& engine) -> Task<void> {
      std::vector<TaskHandle<std::int64_t>> tasks;
      for (int t = 0; t < 100; ++t) {
        tasks.push_back(create_task([&, t]() -> Task<std::int64_t> {
          std::int64_t sum = 0;
          for (int q = 0; q < 20; ++q) {
            co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
              sum += co_await c.fetchval<std::int64_t>("SELECT $1::int8 * 2", t * 100 + q);
            });
          }
          co_return sum;
        }));
      }
      std::int64_t total = 0, expected = 0;
      for (int t = 0; t < 100; ++t) {
        total += co_await tasks[t];
        for (int q = 0; q < 20; ++q) expected += 2 * (t * 100 + q);
      }
      EXPECT_EQ(total, expected);
      EXPECT_EQ(engine.status().checked_out, 0u);
      EXPECT_LE(engine.status().open, 10u);  // overflow connections are closed when returned
    });
  }());
}

// The engine's central promise: a task running begin() + SELECT ... FOR UPDATE + UPDATE + COMMIT (made
// slow by a deferred trigger) is cancelled after every delay from 0 to 200 ms, once and also twice
// (the second cancel interrupts the cleanup itself), by a timeout, and after 0..50 loop iterations,
// through a pool that pre-pings reused connections and one that connects per scope. After each
// round no backend is left in a transaction or holding a lock, the pool's open count is the
// server's, and the row counts exactly the transactions whose task reported success (a task
// cancelled while its COMMIT was in flight may end cancelled with the COMMIT done).
TEST(PgEngine, CancellationAtEveryAwaitPointLeavesNothingBehind) {
  const std::string app = "awith_test_cancel_sweep";
  run([&]() -> Task<void> {
    auto admin = co_await pg::Connection::connect(test::pg_dsn_for("awith_test_admin"));
    co_await admin->execute("DROP TABLE IF EXISTS sweep");
    co_await admin->execute("CREATE TABLE sweep (id int PRIMARY KEY, v int)");
    co_await admin->execute("INSERT INTO sweep VALUES (1, 0)");
    co_await admin->execute(
        "CREATE OR REPLACE FUNCTION sweep_slow() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$");
    co_await admin->execute(
        "CREATE CONSTRAINT TRIGGER sweep_slow_commit AFTER UPDATE ON sweep "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sweep_slow()");
    // Two pools, so the cancellations reach every await point of both ways to a connection: one
    // reuses connections after a pre-ping, the other opens one per scope (idle ones expire at once).
    // Both reset the session on release.
    pg::PoolOptions pinging_options;
    pinging_options.size = 3;
    pinging_options.pre_ping = true;
    pg::PoolOptions fresh_options;
    fresh_options.size = 3;
    fresh_options.max_idle = 1us;
    const std::string pinging_app = app + "_ping", fresh_app = app + "_fresh";
    auto pinging = pg::create_engine(test::pg_dsn_for(pinging_app), pinging_options);
    auto fresh = pg::create_engine(test::pg_dsn_for(fresh_app), fresh_options);
    pg::Engine* engine_in_use = &pinging;
    // Whether async_with(begin()) returned: COMMIT succeeded. (A task cancelled while its COMMIT
    // runs as cleanup still ends cancelled, as in asyncio, though the COMMIT went through.)
    bool returned = false;
    bool body_done = false;  // the scope was committing: an interrupted COMMIT may or may not land
    auto transaction = [&]() -> Task<void> {
      co_await async_with(engine_in_use->begin(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("SELECT v FROM sweep WHERE id = 1 FOR UPDATE");
        co_await c.execute("SELECT pg_sleep(0.02)");
        co_await c.execute("UPDATE sweep SET v = v + 1 WHERE id = 1");
        co_await c.execute("SELECT pg_sleep(0.02)");
        body_done = true;
      });
      returned = true;
    };
    std::int64_t committed = 0;
    int cancelled = 0, completed = 0;
    for (int mode = 0; mode < 4; ++mode) {
      for (int delay_ms = 0; delay_ms <= 200; delay_ms += 4) {
        auto delay = std::chrono::milliseconds(delay_ms);
        engine_in_use = delay_ms % 8 == 0 ? &pinging : &fresh;
        bool ok = false;
        returned = body_done = false;
        if (mode == 2) {
          try {
            co_await async_with(timeout(delay), [&]() -> Task<void> { co_await transaction(); });
            ok = true;
          } catch (const TimeoutError&) {
          }
        } else {
          auto t = create_task([&]() -> Task<void> { co_await transaction(); });
          if (mode == 3) {
            // Cancel after k loop iterations: reaches the short await points (BEGIN, prepares).
            for (int k = 0; k < delay_ms / 4; ++k) co_await sleep(0);
          } else {
            co_await sleep(delay);
          }
          t.cancel();
          if (mode == 1) {
            co_await sleep(3ms);
            t.cancel();
          }
          try {
            co_await t;
            ok = true;
          } catch (const CancelledError&) {
          }
        }
        ok ? ++completed : ++cancelled;
        co_await expect_clean(*admin, pinging_app);
        co_await expect_clean(*admin, fresh_app);
        auto v = co_await admin->fetchval<std::int64_t>("SELECT v FROM sweep WHERE id = 1");
        // A second cancel may interrupt COMMIT itself; then only the server knows whether it landed.
        if (returned) ++committed;
        if (!returned && body_done) {
          EXPECT_TRUE(v == committed || v == committed + 1) << v << " vs " << committed;
          committed = v;
        }
        EXPECT_EQ(v, committed) << "mode " << mode << " delay " << delay_ms << "ms";
        // The pool's count is the server's: every connection it counts open is a backend, and no
        // backend lives on uncounted (closed connections' backends take a moment to exit).
        for (int which = 0; which < 2; ++which) {
          pg::Engine* e = which == 0 ? &pinging : &fresh;
          const std::string* name = which == 0 ? &pinging_app : &fresh_app;
          auto st = e->status();
          EXPECT_EQ(st.checked_out, 0u);
          EXPECT_LE(st.open, 3u);
          std::int64_t backends = -1;
          for (int i = 0; i < 100; ++i) {
            backends = co_await admin->fetchval<std::int64_t>(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", *name);
            if (backends == static_cast<std::int64_t>(st.open)) break;
            co_await sleep(20ms);
          }
          EXPECT_EQ(backends, static_cast<std::int64_t>(st.open)) << *name << " mode " << mode << " delay " << delay_ms << "ms";
        }
      }
    }
    EXPECT_GT(cancelled, 10);
    EXPECT_GT(completed, 10);
    // The pool still works after all that.
    co_await transaction();
    co_await pinging.dispose();
    co_await fresh.dispose();
    co_await admin->execute("DROP TABLE sweep");
  }());
}

// The restart tests restart the server: each has a cluster of its own, stopped on every path.
class PgEngineRestart : public test::PgPrivateCluster {};

TEST_F(PgEngineRestart, ServerRestartGivesClearErrorsAndThePoolRecovers) {
  const std::string named_dsn = dsn() + " application_name=awith_test_restart";
  run([&]() -> Task<void> {
    pg::PoolOptions opts;
    opts.size = 2;
    co_await async_with(pg::create_engine(named_dsn, opts), [&](pg::Engine& engine) -> Task<void> {
      std::string lost_sqlstate;
      auto sleeper = create_task([&]() -> Task<void> {
        co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
          try {
            co_await c.execute("SELECT pg_sleep(30)");
            ADD_FAILURE() << "the statement survived a restart";
          } catch (const pg::ConnectionLostError& e) {
            lost_sqlstate = e.sqlstate();
            if (lost_sqlstate.empty()) ADD_FAILURE() << e.what();
          }
        });
      });
      co_await async_with(engine.connect(), [&](pg::Connection& held) -> Task<void> {
        EXPECT_EQ(co_await held.fetchval<int>("SELECT 1"), 1);
        co_await sleep(100ms);
        co_await to_thread([&] { restart_server(); });
        EXPECT_THROW(co_await held.execute("SELECT 1"), pg::ConnectionLostError);
        EXPECT_TRUE(held.is_closed());
      });
      co_await sleep(0);
      co_await sleeper;
      EXPECT_EQ(lost_sqlstate, "57P01");  // terminating connection due to administrator command
      EXPECT_EQ(engine.status().open, 0u);
      co_await async_with(engine.begin(), [&](pg::Connection& c) -> Task<void> {
        EXPECT_EQ(co_await c.fetchval<int>("SELECT 2"), 2);
      });
      EXPECT_EQ(engine.status().open, 1u);
    });
  }());
}

TEST_F(PgEngineRestart, IdleConnectionsBrokenByARestartAreReplacedTransparently) {
  run([&]() -> Task<void> {
    co_await async_with(pg::create_engine(dsn()), [&](pg::Engine& engine) -> Task<void> {
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> { co_await c.execute("SELECT 1"); });
      co_await to_thread([&] { restart_server(); });
      co_await sleep(50ms);  // the termination notice reaches the idle socket
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
        EXPECT_EQ(co_await c.fetchval<int>("SELECT 3"), 3);
      });
    });
  }());
}

TEST(PgEngine, DisposeClosesEverythingAndRefusesNewAcquires) {
  run([]() -> Task<void> {
    auto engine = pg::create_engine(test::pg_dsn_for("awith_test_dispose"));
    co_await async_with(engine, [&](pg::Engine& e) -> Task<void> {
      co_await async_with(e.connect(), [&](pg::Connection& c) -> Task<void> { co_await c.execute("SELECT 1"); });
      EXPECT_EQ(e.status().open, 1u);
    });
    EXPECT_EQ(engine.status().open, 0u);
    EXPECT_THROW(co_await async_with(engine.connect(), [&]() -> Task<void> { co_return; }), pg::InterfaceError);
  }());
}

TEST(PgEngine, AServerThatNeverAnswersHitsTheConnectTimeout) {
  // A listening socket that never accepts: the TCP handshake completes, the startup packet is
  // never answered.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string dsn = "host=127.0.0.1 port=" + std::to_string(ntohs(addr.sin_port)) + " user=postgres";
  run([&]() -> Task<void> {
    pg::PoolOptions opts;
    opts.connect_timeout = 200ms;
    co_await async_with(pg::create_engine(dsn, opts), [&](pg::Engine& engine) -> Task<void> {
      auto start = EventLoop::running().time();
      EXPECT_THROW(co_await async_with(engine.connect(), [&]() -> Task<void> { co_return; }), pg::ConnectError);
      EXPECT_LT(EventLoop::running().time() - start, 2s);
      EXPECT_EQ(engine.status().checked_out, 0u);
      EXPECT_EQ(engine.status().open, 0u);
    });
  }());
  ::close(fd);
}

// A cancel request for an interrupted statement never reaches the next borrower's statements: the
// pool hands a connection on only after the request was delivered and the connection drained.
// Cancellations land all around the statement's end (0-6 ms into a 3 ms statement), where a request
// sent for a statement that has just finished would otherwise hit the next one.
TEST(PgEngine, ACancelRequestNeverHitsTheNextBorrower) {
  run([]() -> Task<void> {
    pg::PoolOptions options;
    options.size = 1;
    options.deadline_to_server = false;  // the client's own cancel requests are what is tested
    co_await async_with(pg::create_engine(test::pg_dsn_for("awith_test_cancel_next"), options), [&](pg::Engine& e) -> Task<void> {
      int interrupted = 0, hit = 0;
      for (int round = 0; round < 150; ++round) {
        auto delay = std::chrono::microseconds(round * 40 % 6000);
        try {
          co_await async_with(timeout(delay), [&]() -> Task<void> {
            co_await async_with(e.connect(), [](pg::Connection& c) -> Task<void> {
              co_await c.execute("SELECT pg_sleep(0.003)");
            });
          });
        } catch (const TimeoutError&) {
          ++interrupted;
        }
        co_await async_with(e.connect(), [&](pg::Connection& c) -> Task<void> {
          for (int i = 0; i < 3; ++i) {
            try {
              co_await c.execute("SELECT pg_sleep(0.001)");
            } catch (const pg::QueryCanceledError&) {
              ++hit;
            }
          }
        });
      }
      EXPECT_GT(interrupted, 20);
      EXPECT_EQ(hit, 0);
      EXPECT_EQ(e.status().checked_out, 0u);
    });
  }());
}

// dispose() waits for a connection that is never given back only within dispose_timeout, then
// closes it and says so; its holder's next statement fails with a typed error.
TEST(PgEngine, DisposeWaitsForCheckedOutConnectionsOnlyWithinItsBound) {
  run([]() -> Task<void> {
    pg::PoolOptions options;
    options.dispose_timeout = 200ms;
    auto engine = pg::create_engine(test::pg_dsn_for("awith_test_dispose_bound"), options);
    Event holding, disposed;
    bool lost = false;
    auto holder = create_task([&]() -> Task<void> {
      co_await async_with(engine.connect(), [&](pg::Connection& c) -> Task<void> {
        co_await c.execute("SELECT 1");
        holding.set();
        co_await disposed.wait();
        try {
          co_await c.execute("SELECT 1");
        } catch (const pg::ConnectionLostError&) {
          lost = true;
        }
      });
    });
    co_await holding.wait();
    const TimePoint start = EventLoop::running().time();
    bool timed_out = false;
    try {
      co_await engine.dispose();
    } catch (const pg::DisposeTimeoutError& e) {
      timed_out = true;
      EXPECT_NE(std::string(e.what()).find("1 connection(s) still checked out after 200 ms were closed"), std::string::npos)
          << e.what();
    }
    auto waited = EventLoop::running().time() - start;
    EXPECT_TRUE(timed_out);
    EXPECT_GE(waited, 200ms);
    EXPECT_LT(waited, 1s);
    disposed.set();
    co_await holder;
    EXPECT_TRUE(lost);
    EXPECT_EQ(engine.status().checked_out, 0u);
    EXPECT_EQ(engine.status().open, 0u);
  }());
}
