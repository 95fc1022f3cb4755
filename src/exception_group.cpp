#include "awith/exception_group.hpp"

#include "awith/errors.hpp"

namespace awith {

namespace {
std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (const CancelledError& c) {
    return std::string("CancelledError: ") + c.what();
  } catch (...) {
    return "non-standard exception";
  }
}
}  // namespace

ExceptionGroup::ExceptionGroup(std::string message, std::vector<std::exception_ptr> exceptions)
    : message_(std::move(message)), exceptions_(std::move(exceptions)) {
  what_ = message_ + " (" + std::to_string(exceptions_.size()) + " sub-exception" +
          (exceptions_.size() == 1 ? "" : "s") + ")";
  for (std::size_t i = 0; i < exceptions_.size(); ++i)
    what_ += "\n  [" + std::to_string(i + 1) + "] " + describe(exceptions_[i]);
}

const ExceptionGroup* ExceptionGroup::as_group(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const ExceptionGroup& g) {
    return &g;  // the exception object outlives the exception_ptr copy we hold in exceptions_
  } catch (...) {
    return nullptr;
  }
}

}  // namespace awith
