// awith::pg::Connection: statements, reading results, and bringing an interrupted connection back
// to idle. Connecting is in connect.cpp, transactions in transaction.cpp, pipelines in pipeline.cpp.
#include "awith/pg/connection.hpp"

#include <libpq-fe.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <random>

#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/runtime.hpp"
#include "awith/thread.hpp"
#include "libpq_support.hpp"

namespace awith::pg {

namespace detail {

Param text_param(std::string_view s) {
  if (s.find('\0') != std::string_view::npos)
    throw InterfaceError("a text parameter cannot contain a NUL byte");
  return std::string(s);
}

Param to_param(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

}  // namespace detail

using detail::is_lost_sqlstate;
using detail::statement_missing;
using detail::trimmed;

Connection::Connection(pg_conn* conn, ConnectOptions options) : conn_(conn), options_(options) {
  created_ = last_used_ = EventLoop::running().time();
  std::random_device random;
  char prefix[32];
  std::snprintf(prefix, sizeof prefix, "awith_%08x%08x_", random(), random());
  name_prefix_ = prefix;
}

Connection::~Connection() {
  if (lent_) lent_->connections.erase(this);
  close();
}

void Connection::close() noexcept {
  watch_.detach();
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

TransactionStatus Connection::transaction_status() const noexcept {
  if (!conn_) return TransactionStatus::unknown;
  switch (PQtransactionStatus(conn_)) {
    case PQTRANS_IDLE: return TransactionStatus::idle;
    case PQTRANS_ACTIVE: return TransactionStatus::active;
    case PQTRANS_INTRANS: return TransactionStatus::in_transaction;
    case PQTRANS_INERROR: return TransactionStatus::in_error;
    default: return TransactionStatus::unknown;
  }
}
bool Connection::in_transaction() const noexcept {
  auto s = transaction_status();
  return s == TransactionStatus::in_transaction || s == TransactionStatus::in_error;
}
bool Connection::is_closed() const noexcept { return !conn_ || PQstatus(conn_) != CONNECTION_OK; }
int Connection::backend_pid() const noexcept { return conn_ ? PQbackendPID(conn_) : 0; }
bool Connection::reusable() const noexcept {
  return !is_closed() && !busy_ && !pipeline_ && transaction_status() == TransactionStatus::idle;
}

bool Connection::socket_has_data() const noexcept {
  char b;
  ssize_t n = ::recv(watch_.fd(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

bool Connection::check_idle() noexcept {
  if (is_closed()) return false;
  if (watch_.readable() || watch_.hangup()) {
    // An idle connection receives nothing but notifications, or a termination notice and EOF.
    for (int i = 0; i < 8 && socket_has_data(); ++i)
      if (!PQconsumeInput(conn_)) return false;
    while (PGnotify* n = PQnotifies(conn_)) PQfreemem(n);
    if (!socket_has_data()) watch_.clear_readable();
  }
  return PQstatus(conn_) == CONNECTION_OK;
}

void Connection::throw_lost(std::string_view what) const {
  std::string msg = conn_ ? trimmed(PQerrorMessage(conn_)) : std::string("connection closed");
  throw ConnectionLostError(std::string(what) + ": " + (msg.empty() ? "connection lost" : msg));
}

Task<void> Connection::flush() {
  for (;;) {
    int r = PQflush(conn_);
    if (r == 0) co_return;
    if (r < 0) throw_lost("sending to the server");
    watch_.clear_writable();
    co_await watch_.wait_writable();
  }
}

// Reads until libpq holds a complete result. The socket is registered edge-triggered and libpq
// does not always read it dry (it stops after one recv of up to its buffer space), so after a read
// that left the result incomplete a peek decides whether to read again or wait for the next edge.
Task<void> Connection::fill() {
  while (PQisBusy(conn_)) {
    if (!watch_.readable() && !watch_.hangup()) co_await watch_.wait_readable();
    if (!PQconsumeInput(conn_)) break;  // read_results reports the error result libpq makes
    if (PQisBusy(conn_) && !socket_has_data()) watch_.clear_readable();
  }
  if (PQstatus(conn_) != CONNECTION_OK && PQisBusy(conn_)) throw_lost("reading from the server");
}

// Called right after a statement is sent on an idle connection: libpq read the previous response
// through its ReadyForQuery, so nothing of it is left in the socket and the server's answer to this
// statement will raise a fresh edge. Dropping the stale "readable" saves a syscall per statement.
void Connection::expect_response() noexcept {
  watch_.clear_readable();
  if (server_deadline_) sent_at_ = EventLoop::running().time();
}

Task<detail::ResultPtr> Connection::read_results(const std::string& sql) {
  detail::ResultPtr last;
  std::exception_ptr error;
  std::string error_sqlstate, error_message;
  for (;;) {
    co_await fill();
    PGresult* raw = PQgetResult(conn_);
    if (!raw) break;
    auto r = detail::adopt_result(raw);
    switch (PQresultStatus(raw)) {
      case PGRES_FATAL_ERROR: {
        if (error) break;
        QueryError::Fields f = detail::error_fields(raw, sql);
        error_sqlstate = f.sqlstate;
        error_message = f.message;
        if (is_lost_sqlstate(f.sqlstate)) {
          error = std::make_exception_ptr(ConnectionLostError(f.message, f.sqlstate));
        } else if (f.sqlstate == "57014") {
          error = std::make_exception_ptr(QueryCanceledError(std::move(f)));
        } else {
          error = std::make_exception_ptr(QueryError(std::move(f)));
        }
        break;
      }
      case PGRES_COPY_IN:
        PQputCopyEnd(conn_, "COPY FROM STDIN is not supported by awith::pg");
        co_await flush();
        break;
      case PGRES_COPY_OUT: {
        if (!error) error = std::make_exception_ptr(InterfaceError("COPY TO STDOUT is not supported by awith::pg"));
        char* buf = nullptr;
        for (int n; (n = PQgetCopyData(conn_, &buf, 1)) != -1;) {
          if (n == -2) throw_lost("reading COPY data");
          if (n > 0) {
            PQfreemem(buf);
            continue;
          }
          watch_.clear_readable();
          if (!socket_has_data()) co_await watch_.wait_readable();
          if (!PQconsumeInput(conn_)) throw_lost("reading COPY data");
        }
        break;
      }
      default:
        last = std::move(r);
    }
  }
  busy_ = false;
  if (PQstatus(conn_) != CONNECTION_OK) {
    if (error) throw ConnectionLostError(error_message, error_sqlstate);
    throw_lost("executing \"" + sql.substr(0, 80) + "\"");
  }
  if (error && error_sqlstate == "57014" && server_deadline_) {
    // Cancelled by the statement_timeout that carries the caller's deadline: let the caller's
    // scope end it (its TimeoutError), as if the deadline had passed here first.
    const TimePoint now = EventLoop::running().time();
    if (now + std::chrono::milliseconds(5) >= sent_at_ + server_timeout_) {
      co_await sleep(std::max(Duration::zero(), *server_deadline_ - now) + std::chrono::milliseconds(1));
    }
  }
  if (error) std::rethrow_exception(error);
  co_return last;
}

// Connections interrupted mid-statement come back here: cancel what the server is doing (unless
// it is already done and only unread), then read everything to the end.
Task<void> Connection::recover() {
  if (is_closed()) throw_lost("recovering an interrupted connection");
  if (pipeline_) {
    // What an interrupted pipeline still holds is unknown: the connection is not reused.
    close();
    throw ConnectionLostError("a pipeline was interrupted; the connection was closed");
  }
  if (!PQconsumeInput(conn_)) throw_lost("recovering an interrupted connection");
  if (PQisBusy(conn_) && server_deadline_) {
    // The server cancels the statement itself when its statement_timeout passes: wait for that
    // (a little past it) rather than send a cancel request.
    const TimePoint server_gives_up = sent_at_ + server_timeout_ + std::chrono::milliseconds(100);
    if (server_gives_up > EventLoop::running().time()) {
      co_await async_with(CancelScope(server_gives_up), [&]() -> Task<void> { co_await fill(); });
    }
  }
  if (PQisBusy(conn_)) {
    PGcancel* cancel = PQgetCancel(conn_);
    if (cancel) {
      ++cancel_requests_;
      co_await to_thread([cancel] {
        char err[256];
        PQcancel(cancel, err, sizeof err);
        PQfreeCancel(cancel);
      });
    }
  }
  for (;;) {
    co_await fill();
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    auto s = PQresultStatus(r);
    PQclear(r);
    if (s == PGRES_COPY_IN) PQputCopyEnd(conn_, "cancelled");
    if (s == PGRES_COPY_OUT) {
      close();
      throw ConnectionLostError("an interrupted COPY; the connection was closed");
    }
  }
  busy_ = false;
}

Task<void> Connection::ready_for_query() {
  if (!conn_) throw ConnectionLostError("the connection is closed");
  if (pipeline_ && !queued_.empty()) throw InterfaceError("statements are queued in a pipeline: sync() it first");
  if (busy_) co_await recover();
  if (PQstatus(conn_) != CONNECTION_OK) throw_lost("using the connection");
  if (server_deadline_ && transaction_status() == TransactionStatus::idle) server_deadline_.reset();
}

const std::string* Connection::prepared_name(const std::string& sql) {
  auto it = prepared_.find(sql);
  return it == prepared_.end() ? nullptr : &it->second;
}

std::string Connection::next_statement_name() { return name_prefix_ + std::to_string(++statements_); }

void Connection::send_prepared_or_params(const std::string* name, const std::string& sql, const Params& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  int n = static_cast<int>(values.size());
  int ok = name ? PQsendQueryPrepared(conn_, name->c_str(), n, values.data(), nullptr, nullptr, 0)
                : PQsendQueryParams(conn_, sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0);
  if (!ok) {
    if (PQstatus(conn_) != CONNECTION_OK) throw_lost("sending a statement");
    throw InterfaceError(trimmed(PQerrorMessage(conn_)));
  }
  busy_ = true;
  session_touched_ = true;
  if (!prepare_seen_) prepare_seen_ = mentions_prepare(sql);
}

bool Connection::mentions_prepare(std::string_view sql) noexcept {
  constexpr std::string_view word = "prepare";
  auto it = std::search(sql.begin(), sql.end(), word.begin(), word.end(),
                        [](char a, char b) { return (a | 0x20) == b; });
  return it != sql.end();
}

Connection::Operation::Operation(Connection& c) : c_(&c) {
  if (c.operating_) {
    c_ = nullptr;
    throw InterfaceError("another operation is in progress on this connection (use one connection per task)");
  }
  c.operating_ = true;
}

Task<Result> Connection::execute_impl(Operation, std::string sql, Params params) {
  co_await ready_for_query();
  if (pipeline_) throw InterfaceError("the connection is in a pipeline: use the pipeline's send()");
  const std::string* name = prepared_name(sql);
  if (!name && may_prepare()) {
    std::string fresh = next_statement_name();
    if (!PQsendPrepare(conn_, fresh.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr)) {
      if (PQstatus(conn_) != CONNECTION_OK) throw_lost("preparing a statement");
      throw InterfaceError(trimmed(PQerrorMessage(conn_)));
    }
    busy_ = true;
    expect_response();
    co_await flush();
    co_await read_results(sql);
    name = &prepared_.emplace(sql, std::move(fresh)).first->second;
  }
  send_prepared_or_params(name, sql, params);
  expect_response();
  co_await flush();
  std::exception_ptr missing;
  try {
    co_return Result(co_await read_results(sql));
  } catch (const QueryError& e) {
    if (!name || !statement_missing(e.sqlstate(), e.message(), *name)) throw;
    missing = std::current_exception();
  }
  // The server connection never saw the Prepare (a transaction pooler gave each round trip its
  // own), so the statement did not run. Outside a transaction nothing else was undone either: it is
  // sent again unnamed, Parse/Bind/Execute in one round trip that no pooler splits. Inside one the
  // error has aborted the transaction.
  prepared_.erase(sql);
  if (transaction_status() != TransactionStatus::idle) std::rethrow_exception(missing);
  send_prepared_or_params(nullptr, sql, params);
  expect_response();
  co_await flush();
  co_return Result(co_await read_results(sql));
}

Task<std::optional<Row>> Connection::fetchrow_params(std::string sql, Params params) {
  auto result = co_await execute_params(std::move(sql), std::move(params));
  if (result.empty()) co_return std::nullopt;
  co_return result[0];
}

Task<void> Connection::run_simple_impl(Operation, std::string sql) {
  co_await ready_for_query();
  if (!PQsendQuery(conn_, sql.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) throw_lost("sending a statement");
    throw InterfaceError(trimmed(PQerrorMessage(conn_)));
  }
  busy_ = true;
  expect_response();
  co_await flush();
  co_await read_results(sql);
}

Task<void> Connection::ping() {
  co_await run_simple("");
}

Task<bool> Connection::reset(Duration bound, bool rollback) {
  if (reusable()) co_return true;  // idle and outside a transaction: nothing to undo
  awith::detail::CleanupScope cleanup;
  auto scope = CancelScope::after(bound);
  bool failed = false;
  try {
    co_await async_with(scope, [&]() -> Task<void> {
      if (busy_ || pipeline_) co_await recover();
      if (rollback && in_transaction()) co_await run_simple("ROLLBACK");
    });
  } catch (const std::exception&) {
    failed = true;
  } catch (...) {
    close();  // a new cancellation interrupted the reset: the state is unknown
    throw;
  }
  if (failed || scope.cancelled_caught() || !reusable()) close();
  co_return reusable();
}

Task<bool> Connection::reset_session(Duration bound) {
  if (!session_touched_ || !reusable()) co_return reusable();
  std::string sql =
      "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL; SET SESSION AUTHORIZATION DEFAULT; "
      "DISCARD TEMP; DISCARD SEQUENCES";
  // SQL-level prepared statements, without DEALLOCATE ALL (it would drop awith's statement cache);
  // a PL/pgSQL block costs more than the rest together, so only after a statement mentioned PREPARE.
  if (prepare_seen_)
    sql += "; DO $$DECLARE s record; BEGIN FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql LOOP "
           "EXECUTE format('DEALLOCATE %I', s.name); END LOOP; END$$";
  // Shielded: the reset follows a block that has completed (perhaps a COMMIT), which a cancellation
  // arriving now must not turn into an error; the bound keeps it short.
  auto scope = CancelScope::shielded(bound);
  bool failed = false;
  try {
    co_await async_with(scope, [&]() -> Task<void> { co_await run_simple(sql); });
  } catch (const std::exception&) {
    failed = true;
  }
  if (failed || scope.cancelled_caught() || !reusable()) close();
  session_touched_ = false;
  prepare_seen_ = false;
  co_return reusable();
}

}  // namespace awith::pg
