// The PostgreSQL layer's errors. Every failure is one of these types, so callers can tell a server
// that refuses connections from one that rejects the credentials, from one that went away mid-use,
// from an SQL error (with its SQLSTATE and the server's detail and hint).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "awith/errors.hpp"

namespace awith::pg {

// Base of every error raised by awith::pg (asyncpg's PostgresError / InterfaceError roots).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The connection could not be established: refused, unreachable, unknown host, bad DSN, database
// does not exist.
class ConnectError : public Error {
 public:
  using Error::Error;
};

// The server rejected the credentials (SQLSTATE class 28: bad password, unknown role, no
// pg_hba.conf entry).
class AuthenticationError : public ConnectError {
 public:
  using ConnectError::ConnectError;
};

// An established connection broke: the server shut down or restarted, the backend was terminated,
// the socket closed. The connection is unusable and is never returned to a pool.
class ConnectionLostError : public Error {
 public:
  ConnectionLostError(const std::string& message, std::string sqlstate = {})
      : Error(message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};

// COMMIT was sent and its outcome could not be learned: the connection was lost before the reply,
// or no reply came within the commit bound. The server may have committed or not. transaction_id()
// is the transaction's id (pg_current_xact_id) when it was learned — it arrives in the same reply
// as COMMIT's, just before it — so the program can settle the question later with
// `SELECT pg_xact_status($1::xid8)` on a new connection. A transaction that wrote nothing has no
// id and never raises this error (its outcome changes nothing). Cancellation alone never raises
// it: a COMMIT once sent is awaited through a cancellation, within the bound. Deliberately not a
// ConnectionLostError: code that retries a transaction on a lost connection must not retry this.
class CommitOutcomeUnknown : public Error {
 public:
  CommitOutcomeUnknown(const std::string& message, std::optional<std::string> transaction_id)
      : Error(message), transaction_id_(std::move(transaction_id)) {}
  const std::optional<std::string>& transaction_id() const noexcept { return transaction_id_; }

 private:
  std::optional<std::string> transaction_id_;
};

// An error reported by the server for a statement.
class QueryError : public Error {
 public:
  struct Fields {
    std::string sqlstate;
    std::string severity;
    std::string message;
    std::string detail;
    std::string hint;
    std::string statement;
    int position = 0;  // 1-based character offset into the statement, 0 when not reported
  };
  explicit QueryError(Fields f);
  const std::string& sqlstate() const noexcept { return f_.sqlstate; }
  const std::string& message() const noexcept { return f_.message; }
  const std::string& detail() const noexcept { return f_.detail; }
  const std::string& hint() const noexcept { return f_.hint; }
  const std::string& statement() const noexcept { return f_.statement; }
  int position() const noexcept { return f_.position; }

 private:
  Fields f_;
};

// The statement was cancelled on the server (SQLSTATE 57014): statement_timeout or a cancel request.
class QueryCanceledError : public QueryError {
 public:
  using QueryError::QueryError;
};

// Misuse of the API detected on the client: a parameter that cannot be sent, a value that does not
// convert to the requested type, NULL read into a non-optional, a disposed engine.
class InterfaceError : public Error {
 public:
  using Error::Error;
};

// No pooled connection became free within PoolOptions::acquire_timeout.
class PoolTimeoutError : public awith::TimeoutError {
 public:
  using awith::TimeoutError::TimeoutError;
};

// Engine::dispose() waited PoolOptions::dispose_timeout for checked-out connections to come back;
// those still out were closed (their holders' next operation raises ConnectionLostError).
class DisposeTimeoutError : public awith::TimeoutError {
 public:
  using awith::TimeoutError::TimeoutError;
};

}  // namespace awith::pg
