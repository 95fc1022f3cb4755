// ExceptionGroup: several exceptions raised together (a TaskGroup's failures), with Python's
// split/subgroup so a caller can handle one type out of a group (the spirit of `except*`).
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace awith {

class ExceptionGroup : public std::exception {
 public:
  ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions);
  const char* what() const noexcept override { return what_.c_str(); }
  const std::string& message() const noexcept { return message_; }
  const std::vector<std::exception_ptr>& exceptions() const noexcept { return exceptions_; }

  // The exceptions matching `pred` (nested groups are searched and keep their nesting), or
  // nullopt when none match. pred(const std::exception_ptr&) -> bool.
  template <class Pred>
  std::optional<ExceptionGroup> subgroup_if(Pred pred) const;
  template <class E>
  std::optional<ExceptionGroup> subgroup() const {
    return subgroup_if([](const std::exception_ptr& e) { return holds<E>(e); });
  }
  // {matching, rest}: either may be nullopt.
  template <class E>
  std::pair<std::optional<ExceptionGroup>, std::optional<ExceptionGroup>> split() const {
    return {subgroup<E>(), subgroup_if([](const std::exception_ptr& e) { return !holds<E>(e); })};
  }
  template <class E>
  bool contains() const {
    return subgroup<E>().has_value();
  }

  // Whether e holds an E (or something derived from it).
  template <class E>
  static bool holds(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const E&) {
      return true;
    } catch (...) {
      return false;
    }
  }

 private:
  static const ExceptionGroup* as_group(const std::exception_ptr& e) noexcept;
  std::string message_;
  std::vector<std::exception_ptr> exceptions_;
  std::string what_;
};

// except*: handler(const E&) runs for every E in the group (nested ones included); returns the
// group of what is left (rethrow it if it is not empty), as Python's `except* E:` does.
template <class E, class Handler>
std::optional<ExceptionGroup> except_star(const ExceptionGroup& group, Handler handler) {
  auto [matched, rest] = group.split<E>();
  if (matched) {
    std::vector<std::exception_ptr> flat;
    auto collect = [&](auto&& self, const ExceptionGroup& g) -> void {
      for (const auto& e : g.exceptions()) {
        try {
          std::rethrow_exception(e);
        } catch (const ExceptionGroup& inner) {
          self(self, inner);
        } catch (const E& x) {
          handler(x);
        } catch (...) {
        }
      }
    };
    collect(collect, *matched);
  }
  return rest;
}

template <class Pred>
std::optional<ExceptionGroup> ExceptionGroup::subgroup_if(Pred pred) const {
  std::vector<std::exception_ptr> kept;
  for (const auto& e : exceptions_) {
    if (const ExceptionGroup* inner = as_group(e)) {
      if (auto sub = inner->subgroup_if(pred)) kept.push_back(std::make_exception_ptr(std::move(*sub)));
    } else if (pred(e)) {
      kept.push_back(e);
    }
  }
  if (kept.empty()) return std::nullopt;
  return ExceptionGroup(message_, std::move(kept));
}

}  // namespace awith
