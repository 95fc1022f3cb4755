// Pipelines (libpq pipeline mode): Pipeline's queue and sync, and execute_many, which pipelines
// one statement over many parameter sets.
#include <libpq-fe.h>

#include "awith/gather.hpp"
#include "awith/pg/connection.hpp"
#include "awith/tasks.hpp"
#include "libpq_support.hpp"

namespace awith::pg {

using detail::is_lost_sqlstate;
using detail::statement_missing;
using detail::trimmed;

// Reads the results of everything queued in pipeline mode up to and including the sync point.
// A second task flushes the output meanwhile when the socket cannot take it all at once: reading
// and writing must progress together or a large batch deadlocks with the server.
Task<std::vector<Result>> Connection::read_pipeline() {
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
          QueryError::Fields fl = detail::error_fields(raw, q.sql);
          // Prepared on another server connection (a transaction pooler): prepared afresh next time.
          if (auto it = prepared_.find(q.sql);
              q.cached && it != prepared_.end() && statement_missing(fl.sqlstate, fl.message, it->second))
            prepared_.erase(it);
          error = is_lost_sqlstate(fl.sqlstate)
                      ? std::make_exception_ptr(ConnectionLostError(fl.message, fl.sqlstate))
                      : std::make_exception_ptr(QueryError(std::move(fl)));
        }
      } else if (st != PGRES_PIPELINE_ABORTED && !q.prepare_name.empty() && may_prepare()) {
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

// Pipeline::sync's coroutine: it holds the operation token until the sync point is read.
Task<std::vector<Result>> Connection::sync_pipeline(Operation) { co_return co_await read_pipeline(); }

// execute_many's batch: the statement (prepared in the same pipeline when it is new and the cache
// has room, unnamed when use_cache is off) once per parameter set, then a sync point.
Task<void> Connection::pipeline_many(const std::string& sql, const std::vector<Params>& rows, bool use_cache) {
  if (PQenterPipelineMode(conn_) != 1) throw InterfaceError(trimmed(PQerrorMessage(conn_)));
  pipeline_ = true;
  busy_ = true;
  const std::string* name = use_cache ? prepared_name(sql) : nullptr;
  const bool cached = name != nullptr;
  std::string fresh;
  if (use_cache && !name && may_prepare()) {
    fresh = next_statement_name();
    if (!PQsendPrepare(conn_, fresh.c_str(), sql.c_str(), static_cast<int>(rows[0].size()), nullptr))
      throw_lost("preparing a statement");
    queued_.push_back({sql, fresh, false});
    name = &fresh;
  }
  for (auto& params : rows) {
    send_prepared_or_params(name, sql, params);
    queued_.push_back({sql, {}, true, cached});
  }
  if (!PQpipelineSync(conn_)) throw_lost("sending a pipeline sync");
  std::exception_ptr error;
  try {
    co_await read_pipeline();
  } catch (...) {
    error = std::current_exception();
  }
  // Read through the sync point (even after a statement error): back to normal mode.
  if (!busy_ && PQexitPipelineMode(conn_) == 1) pipeline_ = false;
  if (error) std::rethrow_exception(error);
  if (pipeline_) throw InterfaceError(trimmed(PQerrorMessage(conn_)));
}

Task<void> Connection::execute_many_impl(Operation, std::string sql, std::vector<Params> rows) {
  co_await ready_for_query();
  if (pipeline_) throw InterfaceError("execute_many inside a pipeline: use the pipeline's send()");
  if (rows.empty()) co_return;
  const std::string* cached = prepared_name(sql);
  const std::string name = cached ? *cached : std::string();
  std::exception_ptr missing;
  try {
    co_await pipeline_many(sql, rows, true);
    co_return;
  } catch (const QueryError& e) {
    if (name.empty() || !statement_missing(e.sqlstate(), e.message(), name)) throw;
    missing = std::current_exception();
  }
  // Every statement of the batch ran the missing statement, so none ran: outside a transaction
  // the batch is sent again, unnamed (see execute_impl).
  if (pipeline_ || transaction_status() != TransactionStatus::idle) std::rethrow_exception(missing);
  co_await pipeline_many(sql, rows, false);
}

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
  const bool cached = name != nullptr;
  std::string fresh;
  if (!name && c.may_prepare()) {
    bool queued = false;
    for (auto& q : c.queued_) queued |= q.sql == sql && !q.prepare_name.empty();
    if (!queued) {
      fresh = c.next_statement_name();
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
  c.queued_.push_back({std::move(sql), {}, true, cached});
  return queued_++;
}

Task<std::vector<Result>> Pipeline::sync() {
  if (!active_) throw InterfaceError("sync(): the pipeline is not active");
  auto& c = *conn_;
  Connection::Operation op(c);
  if (!PQpipelineSync(c.conn_)) c.throw_lost("sending a pipeline sync");
  c.busy_ = true;
  queued_ = 0;
  return c.sync_pipeline(std::move(op));
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
