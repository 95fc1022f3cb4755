// awith::pg::Engine: a pool of PostgreSQL connections (SQLAlchemy's AsyncEngine / asyncpg's Pool)
// with connection and transaction scopes used through async_with:
// snippet: tests/snippets/pg.cpp#engine
//
//   co_await async_with(pg::create_engine(dsn), [&](pg::Engine& engine) -> Task<void> {
//     co_await async_with(engine.begin(), [&](pg::Connection& conn) -> Task<void> {
//       co_await conn.execute("UPDATE t SET v = $1 WHERE id = $2", 5, 1);
//     });  // COMMIT; ROLLBACK when the body throws or is cancelled
//   });    // every pooled connection closed
//
// A connection goes back to the pool only when it is idle, outside any transaction and fully read;
// otherwise it is reset (cancel request, drain, rollback, bounded by cleanup_timeout) or closed.
// Then the session is reset too (PoolOptions::reset_on_release), so the next borrower gets nothing
// of the previous one's: no setting, role, lock, LISTEN, cursor, temporary table.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <memory>
#include <string>

#include "awith/awaitable.hpp"
#include "awith/loop.hpp"
#include "awith/pg/connection.hpp"
#include "awith/task.hpp"

namespace awith::pg {

struct PoolOptions {
  std::size_t size = 10;         // connections kept open
  std::size_t max_overflow = 0;  // extra connections opened under load, closed when returned
  Duration acquire_timeout = std::chrono::seconds(30);  // then PoolTimeoutError
  // Bound of opening one connection (ConnectOptions::timeout; the DSN's connect_timeout
  // bounds each address within it); then ConnectError.
  Duration connect_timeout = kDefaultConnectTimeout;
  Duration max_lifetime{};  // 0: unlimited; older connections are closed instead of reused
  Duration max_idle{};      // 0: unlimited; connections idle longer are closed instead of reused
  bool pre_ping = false;    // a round trip before handing out a pooled connection
  Duration cleanup_timeout = std::chrono::seconds(5);  // bound of a reset (cancel, drain, rollback)
  // Bound of the wait for COMMIT's reply once it is sent, through a cancellation; past it the
  // outcome is unknown (CommitOutcomeUnknown). See Transaction in connection.hpp.
  Duration commit_timeout = std::chrono::seconds(5);
  // Transactions begun under a deadline tell the server the time left (Connection's
  // deadline_to_server). The pool wait and the connect are bounded by the caller's deadline in any
  // case: when it is nearer than acquire_timeout / connect_timeout, the caller's scope raises its
  // own TimeoutError, not PoolTimeoutError / ConnectError.
  bool deadline_to_server = true;
  // A connection given back after running any statement of its borrower's is reset
  // (Connection::reset_session: settings, role, advisory locks, LISTEN, cursors, temporary tables,
  // SQL-level prepared statements) before the next borrower gets it: one round trip per release.
  // Off: the next borrower may see what the previous one left in the session.
  bool reset_on_release = true;
  // How long dispose() (and the engine's exit) waits for checked-out connections to come back;
  // then it closes them and raises DisposeTimeoutError.
  Duration dispose_timeout = std::chrono::seconds(30);
  ConnectOptions connection;  // every connection the pool opens gets these (statement_cache_size)
};

// What the pool holds right now.
struct PoolStatus {
  std::size_t open = 0;         // connections open (idle + checked out)
  std::size_t idle = 0;         // waiting in the pool
  std::size_t checked_out = 0;  // in use, or being connected for a user
};

namespace detail {
class Pool;
}

// engine.connect(): a pooled connection for the body; leaving returns it (reset if needed).
class ConnectionScope {
 public:
  explicit ConnectionScope(std::shared_ptr<detail::Pool> pool) noexcept;
  ConnectionScope(ConnectionScope&&) noexcept;
  ConnectionScope& operator=(ConnectionScope&&) = delete;
  ~ConnectionScope();
  Task<Connection&> aenter();
  Task<void> aexit(std::exception_ptr error);

 protected:
  std::shared_ptr<detail::Pool> pool_;
  std::unique_ptr<Connection> conn_;
};

// engine.begin(): a pooled connection inside BEGIN; COMMIT when the body succeeds, ROLLBACK when it
// throws or is cancelled. BEGIN and COMMIT go as simple queries: never prepared, so they never
// occupy the statement cache nor meet a missing prepared statement.
class TransactionScope : ConnectionScope {
 public:
  using ConnectionScope::ConnectionScope;
  Task<Connection&> aenter();
  Task<void> aexit(std::exception_ptr error);
};

class Engine {
 public:
  explicit Engine(std::shared_ptr<detail::Pool> pool) noexcept : pool_(std::move(pool)) {}

  Ready<Engine&> aenter() noexcept { return {*this}; }
  // Disposes of the pool (whatever the body's outcome) and waits until it is closed.
  Task<void> aexit(std::exception_ptr error);
  // Closes idle connections, fails new acquires, and waits until every checked-out connection has
  // come back (they are closed as they return) — at most PoolOptions::dispose_timeout: then the
  // connections still out are closed and DisposeTimeoutError says how many.
  Task<void> dispose();

  ConnectionScope connect() { return ConnectionScope(pool_); }
  TransactionScope begin() { return TransactionScope(pool_); }
  // Acquire / release without a scope (asyncpg's pool.acquire / release).
  Task<std::unique_ptr<Connection>> acquire();
  Task<void> release(std::unique_ptr<Connection> conn);

  PoolStatus status() const noexcept;
  const PoolOptions& options() const noexcept;

 private:
  std::shared_ptr<detail::Pool> pool_;
};

// Creates the pool; no connection is opened until the first use.
Engine create_engine(std::string dsn, PoolOptions options = {});

}  // namespace awith::pg
