#include "awith/http/headers.hpp"

#include <algorithm>
#include <stdexcept>

namespace awith::http {

namespace {
constexpr char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

void Headers::set(std::string_view name, std::string value) {
  std::string spelled(name);
  erase(name);
  add(std::move(spelled), std::move(value));
}

std::size_t Headers::erase(std::string_view name) {
  auto before = entries_.size();
  std::erase_if(entries_, [&](const Entry& e) { return iequals(e.first, name); });
  return before - entries_.size();
}

const std::string* Headers::find(std::string_view name) const noexcept {
  for (auto& e : entries_)
    if (iequals(e.first, name)) return &e.second;
  return nullptr;
}

std::optional<std::string_view> Headers::get(std::string_view name) const noexcept {
  if (auto* v = find(name)) return std::string_view(*v);
  return std::nullopt;
}

std::string Headers::get(std::string_view name, std::string_view fallback) const {
  auto* v = find(name);
  return std::string(v ? std::string_view(*v) : fallback);
}

std::vector<std::string_view> Headers::getall(std::string_view name) const {
  std::vector<std::string_view> out;
  for (auto& e : entries_)
    if (iequals(e.first, name)) out.emplace_back(e.second);
  return out;
}

std::string_view Headers::at(std::string_view name) const {
  if (auto* v = find(name)) return *v;
  throw std::out_of_range("no header " + std::string(name));
}

}  // namespace awith::http
