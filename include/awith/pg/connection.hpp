// One PostgreSQL connection driven by the event loop through libpq's non-blocking API: connecting
// (PQconnectStart/Poll), statements with bound $n parameters (prepared once per connection and
// cached, or sent unnamed: ConnectOptions), transactions that nest as savepoints, and pipelines
// (libpq pipeline mode).
//
// Cancellation: an operation interrupted while the server is working leaves the connection
// "busy". The next operation — or the pool when the connection is returned — sends a cancel
// request (PQcancel, on the thread pool because it blocks) and drains the connection back to idle;
// a connection that cannot be brought back to idle is closed, never reused.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "awith/io_wait.hpp"
#include "awith/loop.hpp"
#include "awith/pg/errors.hpp"
#include "awith/pg/result.hpp"
#include "awith/task.hpp"

struct pg_conn;

namespace awith::pg {

// One bound parameter in text format; std::nullopt is SQL NULL.
using Param = std::optional<std::string>;
using Params = std::vector<Param>;

// The bound of Connection::connect when neither its caller nor the DSN's connect_timeout sets one
// (PoolOptions::connect_timeout's default too).
inline constexpr Duration kDefaultConnectTimeout = std::chrono::seconds(30);

namespace detail {
struct ConnectParams {
  std::vector<std::string> keys, values;  // the DSN's options, host/hostaddr/port when not in `hosts`
  std::vector<std::string> hosts;         // the host list to resolve (empty: nothing to resolve)
  std::vector<std::string> ports;         // one port per entry of `hosts`, or empty
  std::optional<Duration> attempt_timeout;  // the DSN's connect_timeout
};
Param text_param(std::string_view s);  // rejects NUL bytes (they cannot travel in text format)
inline Param to_param(std::nullopt_t) { return std::nullopt; }
inline Param to_param(std::nullptr_t) { return std::nullopt; }
inline Param to_param(bool v) { return std::string(v ? "true" : "false"); }
inline Param to_param(const char* s) { return s ? text_param(s) : std::nullopt; }
inline Param to_param(std::string_view s) { return text_param(s); }
inline Param to_param(const std::string& s) { return text_param(s); }
Param to_param(double v);
template <class T>
  requires std::is_integral_v<T>
Param to_param(T v) {
  return std::to_string(v);
}
template <class T>
Param to_param(const std::optional<T>& v) {
  return v ? to_param(*v) : std::nullopt;
}
}  // namespace detail

template <class... A>
Params make_params(const A&... args) {
  Params p;
  p.reserve(sizeof...(A));
  (p.push_back(detail::to_param(args)), ...);
  return p;
}

// What a connection is opened with besides its DSN.
struct ConnectOptions {
  // How many statements are prepared once (named, by SQL text) and cached on the connection, as
  // asyncpg's statement_cache_size; statements beyond it run unnamed. 0: every statement runs
  // unnamed, Parse/Bind/Execute in one round trip, which is what a transaction-pooling PgBouncer
  // without prepared-statement support needs (docs/pg.md).
  std::size_t statement_cache_size = 1024;
  // Bound of the whole connect (Connection::connect); nullopt: see connect() for the default.
  std::optional<Duration> timeout;
};

// PQtransactionStatus, named.
enum class TransactionStatus { idle, active, in_transaction, in_error, unknown };

class Connection;
class TransactionScope;
namespace detail {
class Pool;
}

namespace detail {
// The connections a pool has lent out, shared with them so that one destroyed away from the pool
// (or after it) leaves the set by itself.
struct LentConnections {
  std::unordered_set<Connection*> connections;
};
}  // namespace detail

// conn.transaction(): BEGIN/COMMIT at the outermost level, SAVEPOINT/RELEASE inside a transaction.
// Leaving with an exception (or a cancellation) rolls back to where it began.
//
// Cancel safety of COMMIT: a cancellation (or deadline) that arrives before COMMIT is sent rolls
// back. Once COMMIT is sent, its reply is awaited in a shielded scope bounded by the connection's
// commit_timeout(); a cancellation arriving meanwhile is delivered after the outcome is known. So
// a block whose COMMIT succeeded exits as committed — an enclosing timeout whose deadline passed
// meanwhile exits normally with expired() true. When the outcome cannot be learned (the connection
// is lost after COMMIT was sent, or the bound passes) CommitOutcomeUnknown is raised. A COMMIT sent
// as plain SQL through execute() is not covered. RELEASE SAVEPOINT makes nothing durable, so a
// nested transaction needs no such rule.
class Transaction {
 public:
  explicit Transaction(Connection& conn) noexcept : conn_(&conn) {}
  Task<Connection&> aenter();
  Task<void> aexit(std::exception_ptr error);
  Task<void> commit();
  Task<void> rollback();

 private:
  Connection* conn_;
  std::string savepoint_;  // empty: this is the outermost transaction
  bool active_ = false;
};

// conn.pipeline(): statements are queued with send() and go out together; sync() sends a pipeline
// sync point and returns every statement's result in order (it throws the first statement error
// after reading everything). Leaving the scope syncs what is still queued.
class Pipeline {
 public:
  explicit Pipeline(Connection& conn) noexcept : conn_(&conn) {}
  Task<Pipeline&> aenter();
  Task<void> aexit(std::exception_ptr error);

  template <class... A>
  std::size_t send(std::string_view sql, const A&... args) {
    return send_params(std::string(sql), make_params(args...));
  }
  std::size_t send_params(std::string sql, Params params);
  Task<std::vector<Result>> sync();  // one sync at a time, like any operation on the connection
  std::size_t queued() const noexcept { return queued_; }

 private:
  Connection* conn_;
  std::size_t queued_ = 0;
  bool active_ = false;
};

class Connection {
 public:
  // Connects without blocking the loop. Throws ConnectError, AuthenticationError.
  //
  // Host names (in the DSN, or PGHOST when the DSN names none) are resolved with awith::resolve
  // (dns.hpp, getaddrinfo on the thread pool) into every address, and libpq gets one host entry
  // per address (the name, for TLS and messages, with the address as hostaddr): it tries them in
  // turn, as it tries a host list. A name that does not resolve is skipped; when none resolves,
  // ConnectError names them.
  //
  // Bounds (libpq ignores connect_timeout in non-blocking mode, so they are enforced here):
  // - the DSN's connect_timeout=N bounds each address attempt to N seconds, as in libpq (without
  //   libpq's 2 s minimum): when it passes, the attempt's socket is shut down and libpq goes on to
  //   the next address, so a black-holed address costs N seconds, not the kernel's minutes. An
  //   attempt cut after the TCP handshake (a server that accepts and then stalls) ends the connect:
  //   libpq tries no other address once connected.
  // - ConnectOptions::timeout bounds the whole connect (resolution, every attempt, TLS, authentication). Without
  //   it, and without connect_timeout in the DSN, the whole connect is bounded by
  //   kDefaultConnectTimeout (30 s); with only connect_timeout, nothing bounds the total but the
  //   number of addresses. The pool passes PoolOptions::connect_timeout.
  // Either raises ConnectError naming the bound that passed.
  static Task<std::unique_ptr<Connection>> connect(std::string dsn, ConnectOptions options = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one statement with $1.. parameters; returns its result (rows, command tag). A cached
  // statement that the server reports missing (SQLSTATE 26000: behind a transaction-pooling
  // PgBouncer the statement may run on another server connection than the one that prepared it)
  // leaves the cache; outside a transaction the statement is then sent again, unnamed, once;
  // inside one the error has aborted the transaction and is raised.
  template <class... A>
  Task<Result> execute(std::string_view sql, const A&... args) {
    return execute_params(std::string(sql), make_params(args...));
  }
  Task<Result> execute_params(std::string sql, Params params) {
    return execute_impl(Operation(*this), std::move(sql), std::move(params));
  }
  // asyncpg's names: fetch (all rows), fetchrow (first row or nothing), fetchval (first column of
  // the first row; a query without rows gives std::nullopt when T is optional, else throws).
  template <class... A>
  Task<Result> fetch(std::string_view sql, const A&... args) {
    return execute_params(std::string(sql), make_params(args...));
  }
  template <class... A>
  Task<std::optional<Row>> fetchrow(std::string_view sql, const A&... args) {
    return fetchrow_params(std::string(sql), make_params(args...));
  }
  Task<std::optional<Row>> fetchrow_params(std::string sql, Params params);
  template <class T, class... A>
  Task<T> fetchval(std::string_view sql, const A&... args) {
    return fetchval_params<T>(std::string(sql), make_params(args...));
  }
  template <class T>
  Task<T> fetchval_params(std::string sql, Params params);
  // The statement once per parameter set, pipelined: one round trip for the whole batch. A missing
  // cached statement is handled as by execute(): nothing of the batch ran, so outside a
  // transaction the whole batch is sent again, unnamed.
  Task<void> execute_many(std::string sql, std::vector<Params> rows) {
    return execute_many_impl(Operation(*this), std::move(sql), std::move(rows));
  }

  Transaction transaction() noexcept { return Transaction(*this); }
  Pipeline pipeline() noexcept { return Pipeline(*this); }

  TransactionStatus transaction_status() const noexcept;
  bool in_transaction() const noexcept;
  bool is_closed() const noexcept;
  int backend_pid() const noexcept;
  // Whether the connection may be handed to another user: open, idle, outside any transaction,
  // nothing unread, not in pipeline mode.
  bool reusable() const noexcept;
  // Reads what the server sent while the connection sat idle (a termination notice, EOF) without
  // waiting; returns whether the connection is still usable.
  bool check_idle() noexcept;
  // A round trip with an empty statement (pre-ping).
  Task<void> ping();
  // Brings an interrupted connection back to idle: cancel request, then drain; with `rollback` an
  // open transaction is rolled back too. Runs as cleanup (the cancellation already unwinding the
  // caller does not interrupt it, a new one does) bounded by `bound`; returns reusable(). A
  // failure closes the connection instead of throwing; a new cancellation of the calling task
  // still propagates.
  Task<bool> reset(Duration bound, bool rollback);
  void close() noexcept;
  // Whether a statement of the caller's ran since the connection opened or was last reset_session():
  // only then can the session hold anything of the caller's.
  bool session_touched() const noexcept { return session_touched_; }
  // Undoes what a borrower may have left in the session, in one round trip: settings (RESET ALL)
  // and role (SET SESSION AUTHORIZATION DEFAULT), advisory locks, LISTEN, open cursors, temporary
  // tables, sequence state, and SQL-level prepared statements — awith's own statement cache stays
  // (DISCARD ALL would drop it and cost a Parse per statement afterwards). SQL-level prepared
  // statements are looked for only when a statement since the last reset mentioned PREPARE (one run
  // inside a function is not seen). Runs shielded from cancellation, bounded by `bound`; a failure
  // closes the connection. Returns reusable().
  Task<bool> reset_session(Duration bound);

  // Deadlines to the server (on by default): a transaction begun under a deadline
  // (awith::current_effective_deadline: a timeout, CancelScope or TaskGroup deadline around the
  // code) carries the time left to the server as `SET LOCAL statement_timeout`, sent in the same
  // round trip as BEGIN, so the server stops working when the caller stops waiting. Each statement
  // of the transaction is bounded by the budget left at BEGIN; a budget under 1 ms is not sent (0
  // would mean no limit): the caller's deadline is awaited instead, and its scope raises. When the
  // server cancels a statement for that timeout, the error is the caller's scope's own (its
  // TimeoutError), and no cancel request is needed: an interrupted statement whose server-side
  // timeout is due is drained, not cancelled.
  bool deadline_to_server() const noexcept { return deadline_to_server_; }
  void set_deadline_to_server(bool on) noexcept { deadline_to_server_ = on; }
  // Cancel requests sent so far for this connection's interrupted statements.
  std::uint64_t cancel_requests() const noexcept { return cancel_requests_; }

  // Bound of the wait for COMMIT's reply once it is sent (default 5 s; see Transaction).
  Duration commit_timeout() const noexcept { return commit_timeout_; }
  void set_commit_timeout(Duration bound) noexcept { commit_timeout_ = bound; }

  TimePoint created_at() const noexcept { return created_; }
  TimePoint last_used() const noexcept { return last_used_; }
  void touch(TimePoint now) noexcept { last_used_ = now; }

 private:
  friend class Transaction;
  friend class TransactionScope;
  friend class detail::Pool;
  friend class Pipeline;
  friend class TransactionScope;
  Connection(pg_conn* conn, ConnectOptions options);
  // One operation at a time: a second task using the connection meanwhile gets InterfaceError
  // (instead of its statement being mixed into, or cancelling, the first one's). The token is a
  // parameter of the operation's coroutine, so it is released with the frame in every case.
  class Operation {
   public:
    explicit Operation(Connection& c);
    Operation(Operation&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    Operation& operator=(Operation&&) = delete;
    ~Operation() {
      if (c_) c_->operating_ = false;
    }

   private:
    Connection* c_;
  };
  Task<Result> execute_impl(Operation op, std::string sql, Params params);
  Task<void> execute_many_impl(Operation op, std::string sql, std::vector<Params> rows);
  Task<void> run_simple_impl(Operation op, std::string sql);
  Task<void> run_simple(std::string sql) { return run_simple_impl(Operation(*this), std::move(sql)); }
  // BEGIN of the outermost transaction, with the caller's deadline for the server.
  Task<void> begin_outermost() { return begin_impl(Operation(*this)); }
  Task<void> begin_impl(Operation op);
  // COMMIT of the outermost transaction, cancel-safe as Transaction describes.
  Task<void> commit_outermost() { return commit_impl(Operation(*this)); }
  Task<void> commit_impl(Operation op);
  static Task<std::unique_ptr<Connection>> connect_bounded(detail::ConnectParams params, ConnectOptions options);
  static Task<std::unique_ptr<Connection>> connect_with(const detail::ConnectParams& params, ConnectOptions options);

  Task<void> ready_for_query();
  Task<void> recover();
  Task<void> flush();
  Task<void> fill();
  void expect_response() noexcept;
  Task<detail::ResultPtr> read_results(const std::string& sql);
  Task<std::vector<Result>> read_pipeline();
  Task<std::vector<Result>> sync_pipeline(Operation op);
  Task<void> pipeline_many(const std::string& sql, const std::vector<Params>& rows, bool use_cache);
  const std::string* prepared_name(const std::string& sql);
  bool may_prepare() const noexcept { return prepared_.size() < options_.statement_cache_size; }
  std::string next_statement_name();
  void send_prepared_or_params(const std::string* name, const std::string& sql, const Params& params);
  bool socket_has_data() const noexcept;
  static bool mentions_prepare(std::string_view sql) noexcept;
  [[noreturn]] void throw_lost(std::string_view what) const;

  pg_conn* conn_;
  FdWatch watch_;
  ConnectOptions options_;
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  // Statements queued in pipeline mode, in order: what to expect back for each.
  struct Queued {
    std::string sql;
    std::string prepare_name;  // non-empty: a Prepare whose success adds it to the cache
    bool user = true;          // a user statement (gets a slot in sync()'s result vector)
    bool cached = false;       // runs a statement that was in the cache when it was queued
  };
  std::vector<Queued> queued_;
  int savepoints_ = 0;
  // Names of prepared statements: awith_<random>_<n>. The random part, drawn per connection,
  // keeps the names of all clients apart: behind a transaction pooler a server connection holds
  // the statements of many clients, and a shared name would run another client's statement.
  std::string name_prefix_;
  std::uint64_t statements_ = 0;
  bool busy_ = false;      // a statement was sent and its results were not all read
  bool pipeline_ = false;  // in libpq pipeline mode
  bool operating_ = false;  // an operation (statement, sync) is running
  Duration commit_timeout_ = std::chrono::seconds(5);
  // The deadline the server was given for the current transaction (statement_timeout), if any.
  std::optional<TimePoint> server_deadline_;
  Duration server_timeout_{};
  TimePoint sent_at_{};  // when the latest statement went out
  std::uint64_t cancel_requests_ = 0;
  bool deadline_to_server_ = true;
  bool session_touched_ = false;
  std::shared_ptr<detail::LentConnections> lent_;  // set while a pool has lent it out
  bool prepare_seen_ = false;  // a statement since the last reset_session mentioned PREPARE
  TimePoint created_;
  TimePoint last_used_;
};

template <class T>
Task<T> Connection::fetchval_params(std::string sql, Params params) {
  auto result = co_await execute_params(std::move(sql), std::move(params));
  if (result.empty() || result.columns() == 0) {
    if constexpr (detail::is_optional_v<T>) {
      co_return std::nullopt;
    } else {
      throw InterfaceError("fetchval: the query returned no value");
    }
  }
  co_return result[0].template get<T>(0);
}

}  // namespace awith::pg
