// conn.transaction(): BEGIN/COMMIT at the outermost level, savepoints inside.
#include <libpq-fe.h>

#include <algorithm>
#include <optional>

#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/pg/connection.hpp"
#include "awith/tasks.hpp"
#include "libpq_support.hpp"

namespace awith::pg {


Task<void> Connection::begin_impl(Operation) {
  co_await ready_for_query();
  server_deadline_.reset();
  std::string sql = "BEGIN";
  if (deadline_to_server_) {
    if (auto deadline = current_effective_deadline()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - EventLoop::running().time());
      if (left < std::chrono::milliseconds(1)) {
        // Too little left to tell the server (0 would mean no limit): the deadline's own scope
        // ends this wait; if the deadline moved meanwhile, the transaction begins without one.
        co_await sleep(std::max(Duration::zero(), *deadline - EventLoop::running().time()) + std::chrono::milliseconds(1));
      } else {
        sql += "; SET LOCAL statement_timeout = " + std::to_string(left.count());
        server_deadline_ = *deadline;
        server_timeout_ = left;
      }
    }
  }
  if (!PQsendQuery(conn_, sql.c_str())) throw_lost("sending BEGIN");
  busy_ = true;
  expect_response();
  co_await flush();
  co_await read_results(sql);
}

Task<void> Connection::commit_impl(Operation) {
  co_await ready_for_query();
  // A cancellation that is already due rolls back: COMMIT is not sent.
  co_await checkpoint();
  if (transaction_status() == TransactionStatus::in_error) {
    // COMMIT of a failed transaction is a rollback: the caller must not believe it committed.
    if (!PQsendQuery(conn_, "COMMIT")) throw_lost("sending COMMIT");
    busy_ = true;
    expect_response();
    co_await flush();
    co_await read_results("COMMIT");
    throw InterfaceError("the transaction had failed and was rolled back instead of committed");
  }
  // The transaction's id travels in the same round trip, just before COMMIT's reply: when the
  // reply is lost the program can still ask the server what became of the transaction.
  static const std::string sql = "SELECT pg_current_xact_id_if_assigned()::text; COMMIT";
  if (!PQsendQuery(conn_, sql.c_str())) throw_lost("sending COMMIT");
  busy_ = true;
  expect_response();
  // From here the server may commit at any moment: the outcome is awaited even through a
  // cancellation, within the bound, and the cancellation is delivered after it.
  bool id_known = false;
  std::optional<std::string> id;
  std::exception_ptr failure;
  std::string lost_because;
  auto bound = CancelScope::shielded(commit_timeout_);
  try {
    co_await async_with(bound, [&]() -> Task<void> {
      co_await flush();
      for (;;) {
        co_await fill();
        PGresult* raw = PQgetResult(conn_);
        if (!raw) break;
        auto result = detail::adopt_result(raw);
        if (!id_known && PQresultStatus(raw) == PGRES_TUPLES_OK) {
          id_known = true;
          if (PQntuples(raw) == 1 && !PQgetisnull(raw, 0, 0)) id = std::string(PQgetvalue(raw, 0, 0));
        } else if (PQresultStatus(raw) == PGRES_FATAL_ERROR && !failure) {
          failure = std::make_exception_ptr(QueryError(detail::error_fields(raw, "COMMIT")));
        }
      }
      busy_ = false;
    });
  } catch (const Error& e) {
    failure = std::current_exception();
    lost_because = std::string("the connection was lost after COMMIT was sent (") + e.what() + ")";
  }
  if (bound.cancelled_caught()) {
    lost_because = "no reply to COMMIT within the commit bound of " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(commit_timeout_).count()) + " ms";
  } else if (lost_because.empty() && PQstatus(conn_) != CONNECTION_OK) {
    lost_because = "the connection was lost after COMMIT was sent";
  }
  if (!lost_because.empty()) {
    close();
    // Without writes the outcome changes nothing: a lost connection, with nothing to settle.
    if (id_known && !id) throw ConnectionLostError(lost_because + "; the transaction wrote nothing");
    throw CommitOutcomeUnknown("COMMIT outcome unknown: " + lost_because, id);
  }
  // An error the server reported (a deferred constraint, a serialization failure): rolled back.
  if (failure) std::rethrow_exception(failure);
}

Task<Connection&> Transaction::aenter() {
  if (conn_->pipeline_) throw InterfaceError("transaction() inside a pipeline");
  if (conn_->in_transaction()) {
    savepoint_ = "awith_sp_" + std::to_string(++conn_->savepoints_);
    co_await conn_->run_simple("SAVEPOINT " + savepoint_);
  } else {
    co_await conn_->begin_outermost();
  }
  active_ = true;
  co_return *conn_;
}

Task<void> Transaction::commit() {
  if (!active_) throw InterfaceError("commit(): the transaction is not active");
  active_ = false;
  if (savepoint_.empty()) {
    co_await conn_->commit_outermost();
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

}  // namespace awith::pg
