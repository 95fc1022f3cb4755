// What the parts of awith::pg::Connection share about libpq: error texts and fields.
#pragma once

#include <libpq-fe.h>
#include <poll.h>

#include <cstdlib>
#include <string>

#include "awith/pg/errors.hpp"

namespace awith::pg::detail {

inline std::string trimmed(const char* s) {
  std::string m = s ? s : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

inline std::string field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v ? v : "";
}

inline bool is_lost_sqlstate(const std::string& s) {
  // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 57P04 database_dropped.
  return s.rfind("57P", 0) == 0;
}

// The server does not have the prepared statement `name` (26000 invalid_sql_statement_name naming
// it; the name is checked too because an EXECUTE or DEALLOCATE in the SQL gives the same SQLSTATE).
inline bool statement_missing(const std::string& sqlstate, const std::string& message, const std::string& name) {
  return sqlstate == "26000" && message.find('"' + name + '"') != std::string::npos;
}

// The fields of an error result, for the QueryError of `statement`.
inline QueryError::Fields error_fields(const PGresult* r, const std::string& statement) {
  QueryError::Fields f{field(r, PG_DIAG_SQLSTATE),       field(r, PG_DIAG_SEVERITY),
                       field(r, PG_DIAG_MESSAGE_PRIMARY), field(r, PG_DIAG_MESSAGE_DETAIL),
                       field(r, PG_DIAG_MESSAGE_HINT),    statement,
                       0};
  if (auto pos = field(r, PG_DIAG_STATEMENT_POSITION); !pos.empty()) f.position = std::atoi(pos.c_str());
  if (f.message.empty()) f.message = trimmed(PQresultErrorMessage(r));
  return f;
}

inline bool ready_now(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 0) > 0;
}

}  // namespace awith::pg::detail
