// conn.transaction(): BEGIN/COMMIT at the outermost level, savepoints inside.
#include <libpq-fe.h>

#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/pg/connection.hpp"

namespace awith::pg {

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

}  // namespace awith::pg
