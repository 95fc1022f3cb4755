#include "awith/pg/engine.hpp"

#include <utility>
#include <vector>

#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/runtime.hpp"
#include "awith/sync.hpp"
#include "awith/timeout.hpp"

namespace awith::pg {

namespace detail {

// The pool: a FIFO semaphore of size + max_overflow permits (one per open or opening connection
// in use) and a stack of idle connections (most recently used first, so surplus ones age out).
class Pool {
 public:
  Pool(std::string dsn, PoolOptions options)
      : dsn_(std::move(dsn)),
        options_(options),
        permits_(static_cast<std::int64_t>(options.size + options.max_overflow)) {
    if (options.size + options.max_overflow == 0) throw InterfaceError("PoolOptions: size + max_overflow must be > 0");
  }

  Task<std::unique_ptr<Connection>> acquire() {
    if (closed_) throw InterfaceError("the engine is disposed");
    try {
      if (caller_deadline_within(options_.acquire_timeout)) {
        co_await permits_.acquire();  // the caller's scope ends the wait, with its own error
      } else {
        co_await async_with(timeout(options_.acquire_timeout), [&]() -> Task<void> { co_await permits_.acquire(); });
      }
    } catch (const awith::TimeoutError&) {
      throw PoolTimeoutError("no connection became free within the pool's acquire_timeout (" +
                             std::to_string(status().checked_out) + " checked out)");
    }
    ++checked_out_;
    std::unique_ptr<Connection> conn;
    try {
      if (closed_) throw InterfaceError("the engine is disposed");
      conn = co_await take_idle_or_connect();
      conn->set_commit_timeout(options_.commit_timeout);
      lent_->connections.insert(conn.get());
      conn->lent_ = lent_;
      conn->set_deadline_to_server(options_.deadline_to_server);
    } catch (...) {
      give_permit_back();
      throw;
    }
    co_return conn;
  }

  // Returns a connection that went through reset(): reused if it is clean and young enough.
  void release(std::unique_ptr<Connection> conn) noexcept {
    if (conn) {
      lent_->connections.erase(conn.get());
      conn->lent_.reset();
    }
    auto now = EventLoop::running().time();
    if (conn && !closed_ && conn->reusable() && !expired(*conn, now) && open_ <= options_.size) {
      conn->touch(now);
      idle_.push_back(std::move(conn));
    } else if (conn) {
      conn.reset();
      --open_;
    }
    give_permit_back();
  }

  // After a scope: reset (bounded cleanup), then release whatever the outcome.
  Task<void> give_back(std::unique_ptr<Connection> conn, bool rollback) {
    if (!conn) co_return;
    try {
      bool clean = co_await conn->reset(options_.cleanup_timeout, rollback);
      if (clean && options_.reset_on_release) co_await conn->reset_session(options_.cleanup_timeout);
    } catch (...) {
      release(std::move(conn));
      throw;
    }
    release(std::move(conn));
  }

  Task<void> dispose() {
    closed_ = true;
    open_ -= idle_.size();
    idle_.clear();
    if (checked_out_ == 0) co_return;
    bool drained = false;
    co_await async_with(CancelScope::after(options_.dispose_timeout), [&]() -> Task<void> {
      co_await drained_.wait();
      drained = true;
    });
    if (drained) co_return;
    // Closing never waits on the peer: libpq's Terminate message goes out on a non-blocking socket.
    const std::size_t still_out = checked_out_;
    for (Connection* c : lent_->connections) c->close();
    throw DisposeTimeoutError("dispose(): " + std::to_string(still_out) + " connection(s) still checked out after " +
                              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(options_.dispose_timeout).count()) +
                              " ms were closed");
  }

  PoolStatus status() const noexcept { return {open_, idle_.size(), checked_out_}; }
  const PoolOptions& options() const noexcept { return options_; }

 private:
  // Whether the caller's own deadline comes before `bound` from now.
  static bool caller_deadline_within(Duration bound) {
    auto deadline = current_effective_deadline();
    return deadline && *deadline <= EventLoop::running().time() + bound;
  }

  bool expired(const Connection& c, TimePoint now) const noexcept {
    if (options_.max_lifetime > Duration::zero() && now - c.created_at() >= options_.max_lifetime) return true;
    return false;
  }

  Task<std::unique_ptr<Connection>> take_idle_or_connect() {
    auto now = EventLoop::running().time();
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      bool stale = expired(*conn, now) ||
                   (options_.max_idle > Duration::zero() && now - conn->last_used() >= options_.max_idle) ||
                   !conn->check_idle();
      if (!stale && options_.pre_ping) {
        try {
          co_await conn->ping();
        } catch (const Error&) {
          stale = true;
        } catch (...) {
          // Cancelled mid-ping: the connection may still owe the ping's reply, so it is closed,
          // and counted as closed.
          conn.reset();
          --open_;
          throw;
        }
      }
      if (!stale) co_return conn;
      conn.reset();
      --open_;
    }
    ConnectOptions connect_options = options_.connection;
    // The caller's nearer deadline ends the connect with the caller's own error.
    if (!caller_deadline_within(options_.connect_timeout)) connect_options.timeout = options_.connect_timeout;
    std::unique_ptr<Connection> conn = co_await Connection::connect(dsn_, connect_options);
    ++open_;
    co_return conn;
  }

  void give_permit_back() noexcept {
    --checked_out_;
    permits_.release();
    if (closed_ && checked_out_ == 0) drained_.set();
  }

  std::string dsn_;
  PoolOptions options_;
  Semaphore permits_;
  std::vector<std::unique_ptr<Connection>> idle_;
  Event drained_;
  std::shared_ptr<LentConnections> lent_ = std::make_shared<LentConnections>();
  std::size_t open_ = 0;
  std::size_t checked_out_ = 0;
  bool closed_ = false;
};

}  // namespace detail

ConnectionScope::ConnectionScope(std::shared_ptr<detail::Pool> pool) noexcept : pool_(std::move(pool)) {}
ConnectionScope::ConnectionScope(ConnectionScope&& o) noexcept : pool_(o.pool_), conn_(std::move(o.conn_)) {}
ConnectionScope::~ConnectionScope() {
  // Entered and never exited (no async_with): the connection's state is unknown, so it is closed.
  if (conn_) {
    conn_->close();
    pool_->release(std::move(conn_));
  }
}

Task<Connection&> ConnectionScope::aenter() {
  if (conn_) throw InterfaceError("the connection scope is already entered");
  conn_ = co_await pool_->acquire();
  co_return *conn_;
}

Task<void> ConnectionScope::aexit(std::exception_ptr) {
  // "Reset on return": an interrupted statement is cancelled and drained, an open transaction
  // rolled back; what cannot be made clean is closed.
  co_await pool_->give_back(std::move(conn_), true);
}

Task<Connection&> TransactionScope::aenter() {
  auto& conn = co_await ConnectionScope::aenter();
  std::exception_ptr failed;
  try {
    co_await conn.begin_outermost();
  } catch (...) {
    failed = std::current_exception();
  }
  if (failed) {
    {
      awith::detail::CleanupScope cleanup;  // BEGIN may have been interrupted by a cancellation
      co_await ConnectionScope::aexit(failed);
    }
    std::rethrow_exception(failed);
  }
  co_return conn;
}

Task<void> TransactionScope::aexit(std::exception_ptr error) {
  std::exception_ptr commit_error;
  if (!error) {
    try {
      co_await conn_->commit_outermost();
    } catch (...) {
      commit_error = std::current_exception();
    }
  }
  // On error the reset rolls back (ROLLBACK under a cleanup scope); after COMMIT it is a no-op.
  co_await ConnectionScope::aexit(error ? error : commit_error);
  if (commit_error) std::rethrow_exception(commit_error);
}

Task<void> Engine::aexit(std::exception_ptr) { co_await dispose(); }
Task<void> Engine::dispose() { co_await pool_->dispose(); }
Task<std::unique_ptr<Connection>> Engine::acquire() { return pool_->acquire(); }
Task<void> Engine::release(std::unique_ptr<Connection> conn) { return pool_->give_back(std::move(conn), true); }
PoolStatus Engine::status() const noexcept { return pool_->status(); }
const PoolOptions& Engine::options() const noexcept { return pool_->options(); }

Engine create_engine(std::string dsn, PoolOptions options) {
  return Engine(std::make_shared<detail::Pool>(std::move(dsn), options));
}

}  // namespace awith::pg
