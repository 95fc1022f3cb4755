// HTTP headers: an ordered, case-insensitive multi-map (aiohttp's CIMultiDict). Names keep the
// spelling they were added with; lookups ignore ASCII case; a name may appear several times.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace awith::http {

bool iequals(std::string_view a, std::string_view b) noexcept;

class Headers {
 public:
  using Entry = std::pair<std::string, std::string>;

  Headers() = default;
  Headers(std::initializer_list<Entry> entries) : entries_(entries) {}

  // Appends a value (an existing name keeps its earlier values).
  void add(std::string name, std::string value) { entries_.emplace_back(std::move(name), std::move(value)); }
  // Replaces every value of `name` with one.
  void set(std::string_view name, std::string value);
  // Removes every value of `name`; returns how many were removed.
  std::size_t erase(std::string_view name);

  bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }
  // The first value of `name`.
  std::optional<std::string_view> get(std::string_view name) const noexcept;
  std::string get(std::string_view name, std::string_view fallback) const;
  // Every value of `name`, in order (aiohttp's getall).
  std::vector<std::string_view> getall(std::string_view name) const;
  // The first value; std::out_of_range (KeyError) when absent.
  std::string_view at(std::string_view name) const;

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  void clear() noexcept { entries_.clear(); }
  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }

 private:
  const std::string* find(std::string_view name) const noexcept;
  std::vector<Entry> entries_;
};

}  // namespace awith::http
