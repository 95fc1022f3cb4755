#include "awith/pg/result.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <cstdlib>
#include <string>

namespace awith::pg {

QueryError::QueryError(Fields f)
    : Error([&] {
        std::string what = (f.severity.empty() ? std::string("ERROR") : f.severity) + ": " + f.message;
        if (!f.sqlstate.empty()) what += " (SQLSTATE " + f.sqlstate + ")";
        if (!f.detail.empty()) what += "\nDETAIL: " + f.detail;
        if (!f.hint.empty()) what += "\nHINT: " + f.hint;
        if (!f.statement.empty()) what += "\nSTATEMENT: " + f.statement;
        return what;
      }()),
      f_(std::move(f)) {}

namespace detail {

ResultPtr adopt_result(pg_result* r) { return ResultPtr(r, [](pg_result* p) { PQclear(p); }); }

namespace {
[[noreturn]] void bad_value(std::string_view text, std::string_view column, const char* type) {
  throw InterfaceError("column \"" + std::string(column) + "\": value \"" + std::string(text.substr(0, 64)) +
                       "\" is not a valid " + type);
}
template <class T>
T integer(std::string_view text, std::string_view column, const char* type) {
  T v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) bad_value(text, column, type);
  return v;
}
template <class T>
T floating(std::string_view text, std::string_view column, const char* type) {
  // PostgreSQL spells the specials NaN, Infinity, -Infinity; strtod accepts all three.
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size()) bad_value(text, column, type);
  return static_cast<T>(v);
}
}  // namespace

bool FromText<bool>::convert(std::string_view text, std::string_view column) {
  if (text == "t") return true;
  if (text == "f") return false;
  bad_value(text, column, "bool");
}
std::int16_t FromText<std::int16_t>::convert(std::string_view t, std::string_view c) {
  return integer<std::int16_t>(t, c, "int16");
}
std::int32_t FromText<std::int32_t>::convert(std::string_view t, std::string_view c) {
  return integer<std::int32_t>(t, c, "int32");
}
std::int64_t FromText<std::int64_t>::convert(std::string_view t, std::string_view c) {
  return integer<std::int64_t>(t, c, "int64");
}
double FromText<double>::convert(std::string_view t, std::string_view c) { return floating<double>(t, c, "double"); }
float FromText<float>::convert(std::string_view t, std::string_view c) { return floating<float>(t, c, "float"); }
std::string FromText<std::string>::convert(std::string_view t, std::string_view) { return std::string(t); }
std::string_view FromText<std::string_view>::convert(std::string_view t, std::string_view) { return t; }

}  // namespace detail

int Row::size() const noexcept { return PQnfields(result_.get()); }
bool Row::is_null(int column) const {
  check_column(column);
  return PQgetisnull(result_.get(), index_, column) != 0;
}
std::string_view Row::text(int column) const {
  check_column(column);
  return {PQgetvalue(result_.get(), index_, column), static_cast<std::size_t>(PQgetlength(result_.get(), index_, column))};
}
std::string_view Row::column_name(int column) const {
  check_column(column);
  return PQfname(result_.get(), column);
}
int Row::column_index(std::string_view name) const {
  for (int i = 0, n = size(); i < n; ++i)
    if (name == PQfname(result_.get(), i)) return i;
  throw InterfaceError("no column named \"" + std::string(name) + "\" in the result");
}
void Row::check_column(int column) const {
  if (column < 0 || column >= size())
    throw InterfaceError("column index " + std::to_string(column) + " out of range (the row has " +
                         std::to_string(size()) + " columns)");
}
void Row::null_error(int column) const {
  throw InterfaceError("column \"" + std::string(column_name(column)) +
                       "\" is NULL: read it as std::optional<T>");
}

std::size_t Result::size() const noexcept {
  return result_ ? static_cast<std::size_t>(PQntuples(result_.get())) : 0;
}
int Result::columns() const noexcept { return result_ ? PQnfields(result_.get()) : 0; }
std::string_view Result::column_name(int column) const {
  if (column < 0 || column >= columns()) throw InterfaceError("column index out of range");
  return PQfname(result_.get(), column);
}
Row Result::operator[](std::size_t row) const { return Row(result_, static_cast<int>(row)); }
Row Result::at(std::size_t row) const {
  if (row >= size())
    throw InterfaceError("row " + std::to_string(row) + " out of range (" + std::to_string(size()) + " rows)");
  return (*this)[row];
}
std::string_view Result::command_tag() const noexcept { return result_ ? PQcmdStatus(result_.get()) : ""; }
std::int64_t Result::rows_affected() const noexcept {
  if (!result_) return 0;
  const char* n = PQcmdTuples(result_.get());
  return *n ? std::strtoll(n, nullptr, 10) : 0;
}

}  // namespace awith::pg
