// awith::ExceptionContext: what a loop's exception handler receives (asyncio's context dict).
#pragma once

#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "awith/source_location.hpp"

namespace awith {

// An error nobody can catch any more (a loop callback that threw, a task exception never
// retrieved, a failed connection handler) or a debug finding. It has a constructor rather than
// being an aggregate, so it can be built inline anywhere, including inside a co_await expression.
class ExceptionContext {
 public:
  explicit ExceptionContext(std::string message, std::exception_ptr exception = nullptr, std::string task = {},
                            std::optional<SourceLocation> where = std::nullopt)
      : message(std::move(message)), exception(std::move(exception)), task(std::move(task)), where(where) {}

  std::string message;
  std::exception_ptr exception;  // null when the report is not about an exception
  // The task involved, as it describes itself ("task created at file:line in function"); empty if
  // none. A description rather than a pointer: the task may be gone by the time this is read.
  std::string task;
  // Where the callback that failed was created (call_soon, call_later, call_at,
  // call_soon_threadsafe), when a callback is involved.
  std::optional<SourceLocation> where;

  // The report as EventLoop::default_exception_handler prints it: the message, then the
  // exception's type and what(), the task, and the creation site, one per line.
  std::string describe() const;
};

}  // namespace awith
