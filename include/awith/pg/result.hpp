// Query results with typed access: rows are read in PostgreSQL's text format and converted on
// request (row.get<int64_t>(0), row.get<std::string>("name"), std::optional<T> for NULL).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "awith/pg/errors.hpp"

struct pg_result;

namespace awith::pg {

namespace detail {
using ResultPtr = std::shared_ptr<pg_result>;
ResultPtr adopt_result(pg_result* r);

// Text-format conversions; they throw InterfaceError naming the column and the value.
template <class T>
struct FromText;
#define AWITH_PG_FROM_TEXT(T) \
  template <>                 \
  struct FromText<T> {        \
    static T convert(std::string_view text, std::string_view column); \
  };
AWITH_PG_FROM_TEXT(bool)
AWITH_PG_FROM_TEXT(std::int16_t)
AWITH_PG_FROM_TEXT(std::int32_t)
AWITH_PG_FROM_TEXT(std::int64_t)
AWITH_PG_FROM_TEXT(double)
AWITH_PG_FROM_TEXT(float)
AWITH_PG_FROM_TEXT(std::string)
AWITH_PG_FROM_TEXT(std::string_view)
#undef AWITH_PG_FROM_TEXT

template <class T>
inline constexpr bool is_optional_v = false;
template <class T>
inline constexpr bool is_optional_v<std::optional<T>> = true;
}  // namespace detail

class Row {
 public:
  Row(detail::ResultPtr result, int index) noexcept : result_(std::move(result)), index_(index) {}

  int size() const noexcept;
  bool is_null(int column) const;
  // The raw text of a column (empty for NULL).
  std::string_view text(int column) const;
  std::string_view column_name(int column) const;
  int column_index(std::string_view name) const;  // throws InterfaceError if there is none

  // The value converted to T; NULL throws InterfaceError unless T is std::optional<U>.
  // std::string_view points into the result and lives as long as any Row or Result of it.
  template <class T>
  T get(int column) const {
    check_column(column);
    if constexpr (detail::is_optional_v<T>) {
      if (is_null(column)) return std::nullopt;
      return get<typename T::value_type>(column);
    } else {
      if (is_null(column)) null_error(column);
      return detail::FromText<T>::convert(text(column), column_name(column));
    }
  }
  template <class T>
  T get(std::string_view name) const {
    return get<T>(column_index(name));
  }

 private:
  void check_column(int column) const;
  [[noreturn]] void null_error(int column) const;
  detail::ResultPtr result_;
  int index_;
};

// The outcome of one statement: its rows (possibly none), its columns and its command tag.
class Result {
 public:
  Result() = default;
  explicit Result(detail::ResultPtr r) noexcept : result_(std::move(r)) {}

  std::size_t size() const noexcept;  // rows
  bool empty() const noexcept { return size() == 0; }
  int columns() const noexcept;
  std::string_view column_name(int column) const;
  Row operator[](std::size_t row) const;
  Row at(std::size_t row) const;  // throws InterfaceError when out of range
  // "INSERT 0 3", "SELECT 1", "BEGIN".
  std::string_view command_tag() const noexcept;
  // Rows inserted, updated, deleted, selected, ... (0 when the command reports none).
  std::int64_t rows_affected() const noexcept;

  class iterator {
   public:
    using value_type = Row;
    using difference_type = std::ptrdiff_t;
    iterator(const Result* r, std::size_t i) noexcept : r_(r), i_(i) {}
    Row operator*() const { return (*r_)[i_]; }
    iterator& operator++() noexcept {
      ++i_;
      return *this;
    }
    bool operator==(const iterator& o) const noexcept { return i_ == o.i_; }

   private:
    const Result* r_;
    std::size_t i_;
  };
  iterator begin() const noexcept { return {this, 0}; }
  iterator end() const noexcept { return {this, size()}; }

 private:
  detail::ResultPtr result_;
};

}  // namespace awith::pg
