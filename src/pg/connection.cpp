#include "awith/pg/connection.hpp"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/gather.hpp"
#include "awith/runtime.hpp"
#include "awith/tasks.hpp"
#include "awith/thread.hpp"

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

namespace {

// Cached prepared statements per connection; statements beyond this run unnamed.
constexpr std::size_t kMaxPrepared = 1024;

std::string trimmed(const char* s) {
  std::string m = s ? s : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

std::string field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v ? v : "";
}

bool is_lost_sqlstate(const std::string& s) {
  // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 57P04 database_dropped.
  return s.rfind("57P", 0) == 0;
}

void ignore_notice(void*, const char*) {}

bool ready_now(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 0) > 0;
}

// Host names in the DSN are resolved on the thread pool and passed to libpq as hostaddr:
// PQconnectStart would otherwise call getaddrinfo on the loop thread.
using detail::ConnectParams;

bool numeric_host(const std::string& h) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

std::string resolve_host(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) throw ConnectError("could not resolve host \"" + host + "\": " + gai_strerror(rc));
  char buf[INET6_ADDRSTRLEN] = {};
  const void* addr = res->ai_family == AF_INET
                         ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr)
                         : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr);
  inet_ntop(res->ai_family, addr, buf, sizeof buf);
  ::freeaddrinfo(res);
  return buf;
}

bool is_name(const std::string& h) { return !h.empty() && h[0] != '/' && h[0] != '@' && !numeric_host(h); }

// Parses the DSN (a plain function: it throws before any coroutine frame exists).
ConnectParams parse_dsn(const std::string& dsn, std::vector<std::string>& names_to_resolve) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    std::string msg = "out of memory";
    if (err) msg = trimmed(err);
    PQfreemem(err);
    throw ConnectError("invalid DSN: " + msg);
  }
  ConnectParams out;
  std::string host, hostaddr;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::strcmp(o->keyword, "host") == 0) host = o->val;
    if (std::strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
    out.keys.emplace_back(o->keyword);
    out.values.emplace_back(o->val);
  }
  PQconninfoFree(opts);
  if (!host.empty() && hostaddr.empty()) {
    // A comma-separated list of hosts: names are resolved, addresses and socket paths kept.
    std::vector<std::string> hosts;
    for (std::size_t start = 0;;) {
      auto comma = host.find(',', start);
      hosts.push_back(host.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    bool any_name = false;
    for (auto& h : hosts) any_name |= is_name(h);
    if (any_name) names_to_resolve = std::move(hosts);
  }
  return out;
}

// hostaddr for a host list: each name resolved, each address kept, socket paths left empty.
std::string resolve_hosts(const std::vector<std::string>& hosts) {
  std::string joined;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (i) joined += ',';
    const auto& h = hosts[i];
    if (is_name(h)) {
      joined += resolve_host(h);
    } else if (!h.empty() && h[0] != '/' && h[0] != '@') {
      joined += h;
    }
  }
  return joined;
}

[[noreturn]] void throw_connect_error(PGconn* c) {
  std::string msg = trimmed(PQerrorMessage(c));
  // libpq 15 exposes no SQLSTATE for connection failures: the server's FATAL texts (C locale).
  bool auth = msg.find("authentication failed") != std::string::npos ||
              msg.find("pg_hba.conf") != std::string::npos ||
              (msg.find("role \"") != std::string::npos && msg.find("does not exist") != std::string::npos);
  if (auth) throw AuthenticationError(msg);
  throw ConnectError(msg);
}

}  // namespace

Connection::Connection(pg_conn* conn) : conn_(conn) {
  created_ = last_used_ = EventLoop::running().time();
}

Connection::~Connection() { close(); }

void Connection::close() noexcept {
  watch_.detach();
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

Task<std::unique_ptr<Connection>> Connection::connect(std::string dsn) {
  std::vector<std::string> names;
  return connect_with(parse_dsn(dsn, names), std::move(names));
}

Task<std::unique_ptr<Connection>> Connection::connect_with(ConnectParams params, std::vector<std::string> names) {
  if (!names.empty()) {
    std::string addrs = co_await to_thread([names] { return resolve_hosts(names); });
    params.keys.emplace_back("hostaddr");
    params.values.push_back(std::move(addrs));
  }
  std::vector<const char*> keys, values;
  for (std::size_t i = 0; i < params.keys.size(); ++i) {
    keys.push_back(params.keys[i].c_str());
    values.push_back(params.values[i].c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* raw = PQconnectStartParams(keys.data(), values.data(), 0);
  if (!raw) throw ConnectError("out of memory");
  std::unique_ptr<Connection> conn(new Connection(raw));
  if (PQstatus(raw) == CONNECTION_BAD) throw_connect_error(raw);
  auto status = PGRES_POLLING_WRITING;
  for (;;) {
    // libpq may close the socket and open another (next host, SSL fallback): register afresh.
    int fd = PQsocket(raw);
    if (fd < 0) throw_connect_error(raw);
    conn->watch_.attach(fd);
    if (status == PGRES_POLLING_READING) {
      if (!ready_now(fd, POLLIN)) {
        conn->watch_.clear_readable();
        co_await conn->watch_.wait_readable();
      }
    } else if (!ready_now(fd, POLLOUT)) {
      conn->watch_.clear_writable();
      co_await conn->watch_.wait_writable();
    }
    status = PQconnectPoll(raw);
    if (status == PGRES_POLLING_FAILED) throw_connect_error(raw);
    if (status == PGRES_POLLING_OK) break;
  }
  if (PQsetnonblocking(raw, 1) != 0) throw ConnectError("cannot make the connection non-blocking");
  // Notices (and a termination notice on an idle connection) must not go to stderr from a library.
  PQsetNoticeProcessor(raw, &ignore_notice, nullptr);
  conn->watch_.attach(PQsocket(raw));
  co_return conn;
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
void Connection::expect_response() noexcept { watch_.clear_readable(); }

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
        QueryError::Fields f{field(raw, PG_DIAG_SQLSTATE), field(raw, PG_DIAG_SEVERITY),
                             field(raw, PG_DIAG_MESSAGE_PRIMARY), field(raw, PG_DIAG_MESSAGE_DETAIL),
                             field(raw, PG_DIAG_MESSAGE_HINT), sql, 0};
        if (auto pos = field(raw, PG_DIAG_STATEMENT_POSITION); !pos.empty()) f.position = std::atoi(pos.c_str());
        if (f.message.empty()) f.message = trimmed(PQresultErrorMessage(raw));
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
  if (PQisBusy(conn_)) {
    PGcancel* cancel = PQgetCancel(conn_);
    if (cancel) {
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
}

const std::string* Connection::prepared_name(const std::string& sql) {
  auto it = prepared_.find(sql);
  return it == prepared_.end() ? nullptr : &it->second;
}

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
  if (!name && prepared_.size() < kMaxPrepared) {
    std::string fresh = "awith_" + std::to_string(++statements_);
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

// Reads the results of everything queued in pipeline mode up to and including the sync point.
// A second task flushes the output meanwhile when the socket cannot take it all at once: reading
// and writing must progress together or a large batch deadlocks with the server.
Task<std::vector<Result>> Connection::read_pipeline(Operation) {
  std::vector<Result> results;
  std::exception_ptr error;
  bool synced = false;
  TaskHandle<void> writer;
  int f = PQflush(conn_);
  if (f < 0) throw_lost("sending a pipeline");
  if (f == 1) writer = create_task([this]() -> Task<void> { co_await flush(); });
  try {
    std::size_t item = 0;
    while (!synced) {
      co_await fill();
      PGresult* raw = PQgetResult(conn_);
      if (!raw) {
        ++item;  // end of one queued statement's results
        continue;
      }
      auto r = detail::adopt_result(raw);
      auto st = PQresultStatus(raw);
      if (st == PGRES_PIPELINE_SYNC) {
        synced = true;
        break;
      }
      if (item >= queued_.size()) throw InterfaceError("pipeline: more results than statements");
      const auto& q = queued_[item];
      if (st == PGRES_FATAL_ERROR) {
        if (!error) {
          QueryError::Fields fl{field(raw, PG_DIAG_SQLSTATE), field(raw, PG_DIAG_SEVERITY),
                                field(raw, PG_DIAG_MESSAGE_PRIMARY), field(raw, PG_DIAG_MESSAGE_DETAIL),
                                field(raw, PG_DIAG_MESSAGE_HINT), q.sql, 0};
          error = is_lost_sqlstate(fl.sqlstate)
                      ? std::make_exception_ptr(ConnectionLostError(fl.message, fl.sqlstate))
                      : std::make_exception_ptr(QueryError(std::move(fl)));
        }
      } else if (st != PGRES_PIPELINE_ABORTED && !q.prepare_name.empty() && prepared_.size() < kMaxPrepared) {
        prepared_.emplace(q.sql, q.prepare_name);
      }
      if (q.user) results.emplace_back(st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED ? detail::ResultPtr() : r);
    }
  } catch (...) {
    error = std::current_exception();
  }
  if (writer) {
    awith::detail::CleanupScope cleanup;
    if (!writer.done()) writer.cancel();
    std::vector<TaskHandle<void>> writers(1, writer);  // not a braced temporary: g++ 12 miscompiles those in co_await
    co_await wait(std::move(writers));
    (void)writer.exception();  // a write failure also failed the reads: reported through them
  }
  if (synced) {
    queued_.clear();
    busy_ = false;
  }
  if (error) std::rethrow_exception(error);
  co_return results;
}

Task<void> Connection::execute_many_impl(Operation op, std::string sql, std::vector<Params> rows) {
  co_await ready_for_query();
  if (pipeline_) throw InterfaceError("execute_many inside a pipeline: use the pipeline's send()");
  if (rows.empty()) co_return;
  if (PQenterPipelineMode(conn_) != 1) throw InterfaceError(trimmed(PQerrorMessage(conn_)));
  pipeline_ = true;
  busy_ = true;
  const std::string* name = prepared_name(sql);
  std::string fresh;
  if (!name) {
    fresh = "awith_" + std::to_string(++statements_);
    if (!PQsendPrepare(conn_, fresh.c_str(), sql.c_str(), static_cast<int>(rows[0].size()), nullptr))
      throw_lost("preparing a statement");
    queued_.push_back({sql, fresh, false});
    name = &fresh;
  }
  for (auto& params : rows) {
    send_prepared_or_params(name, sql, params);
    queued_.push_back({sql, {}, true});
  }
  if (!PQpipelineSync(conn_)) throw_lost("sending a pipeline sync");
  std::exception_ptr error;
  try {
    co_await read_pipeline(std::move(op));
  } catch (...) {
    error = std::current_exception();
  }
  // Read through the sync point (even after a statement error): back to normal mode.
  if (!busy_ && PQexitPipelineMode(conn_) == 1) pipeline_ = false;
  if (error) std::rethrow_exception(error);
  if (pipeline_) throw InterfaceError(trimmed(PQerrorMessage(conn_)));
}

// --- bounded reset ------------------------------------------------------------------------------

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

// --- transactions -------------------------------------------------------------------------------

Task<Connection&> Transaction::aenter() {
  if (conn_->pipeline_) throw InterfaceError("transaction() inside a pipeline");
  if (conn_->in_transaction()) {
    savepoint_ = "awith_sp_" + std::to_string(++conn_->savepoints_);
    co_await conn_->run_simple("SAVEPOINT " + savepoint_);
  } else {
    co_await conn_->run_simple("BEGIN");
  }
  active_ = true;
  co_return *conn_;
}

Task<void> Transaction::commit() {
  if (!active_) throw InterfaceError("commit(): the transaction is not active");
  active_ = false;
  if (savepoint_.empty()) {
    bool failed = conn_->transaction_status() == TransactionStatus::in_error;
    co_await conn_->run_simple("COMMIT");
    // COMMIT of a failed transaction is a rollback: the caller must not believe it committed.
    if (failed) throw InterfaceError("the transaction had failed and was rolled back instead of committed");
  } else {
    co_await conn_->run_simple("RELEASE SAVEPOINT " + savepoint_);
  }
}

Task<void> Transaction::rollback() {
  if (!active_) throw InterfaceError("rollback(): the transaction is not active");
  active_ = false;
  if (savepoint_.empty()) {
    co_await conn_->run_simple("ROLLBACK");
  } else {
    co_await conn_->run_simple("ROLLBACK TO SAVEPOINT " + savepoint_);
    co_await conn_->run_simple("RELEASE SAVEPOINT " + savepoint_);
  }
}

Task<void> Transaction::aexit(std::exception_ptr error) {
  if (!active_) co_return;
  if (!error) {
    co_await commit();
    co_return;
  }
  // Roll back as cleanup: the body's cancellation must not stop it; its own bound does.
  awith::detail::CleanupScope cleanup;
  auto scope = CancelScope::after(std::chrono::seconds(5));
  bool ok = true;
  try {
    co_await async_with(scope, [&]() -> Task<void> {
      if (conn_->busy_) co_await conn_->recover();
      co_await rollback();
    });
  } catch (const std::exception&) {
    ok = false;
  }
  // A connection whose rollback did not complete is in an unknown state: close it.
  if (!ok || scope.cancelled_caught()) conn_->close();
}

// --- pipelines ----------------------------------------------------------------------------------

Task<Pipeline&> Pipeline::aenter() {
  co_await conn_->ready_for_query();
  if (conn_->pipeline_) throw InterfaceError("the connection is already in a pipeline");
  if (PQenterPipelineMode(conn_->conn_) != 1) throw InterfaceError(trimmed(PQerrorMessage(conn_->conn_)));
  conn_->pipeline_ = true;
  active_ = true;
  co_return *this;
}

std::size_t Pipeline::send_params(std::string sql, Params params) {
  if (!active_) throw InterfaceError("send(): the pipeline is not active");
  if (conn_->operating_) throw InterfaceError("send(): the pipeline is being synced");
  auto& c = *conn_;
  const std::string* name = c.prepared_name(sql);
  std::string fresh;
  if (!name && c.prepared_.size() < kMaxPrepared) {
    bool queued = false;
    for (auto& q : c.queued_) queued |= q.sql == sql && !q.prepare_name.empty();
    if (!queued) {
      fresh = "awith_" + std::to_string(++c.statements_);
      if (!PQsendPrepare(c.conn_, fresh.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr))
        c.throw_lost("preparing a statement");
      c.queued_.push_back({sql, fresh, false});
      name = &fresh;
    } else {
      for (auto& q : c.queued_)
        if (q.sql == sql && !q.prepare_name.empty()) name = &q.prepare_name;
    }
  }
  c.send_prepared_or_params(name, sql, params);
  c.queued_.push_back({std::move(sql), {}, true});
  return queued_++;
}

Task<std::vector<Result>> Pipeline::sync() {
  if (!active_) throw InterfaceError("sync(): the pipeline is not active");
  auto& c = *conn_;
  Connection::Operation op(c);
  if (!PQpipelineSync(c.conn_)) c.throw_lost("sending a pipeline sync");
  c.busy_ = true;
  queued_ = 0;
  return c.read_pipeline(std::move(op));
}

Task<void> Pipeline::aexit(std::exception_ptr error) {
  if (!active_) co_return;
  std::exception_ptr sync_error;
  if (!error && queued_ > 0) {
    try {
      co_await sync();
    } catch (...) {
      sync_error = std::current_exception();
    }
  }
  if (conn_->busy_) {
    // Unread pipeline results after a failure: recover() closes the connection.
    awith::detail::CleanupScope cleanup;
    try {
      co_await conn_->recover();
    } catch (const Error&) {
    }
  }
  active_ = false;
  if (!conn_->is_closed()) {
    if (PQexitPipelineMode(conn_->conn_) != 1) {
      conn_->close();
    } else {
      conn_->pipeline_ = false;
    }
  }
  if (sync_error) std::rethrow_exception(sync_error);
}

}  // namespace awith::pg
