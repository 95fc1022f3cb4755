#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

#include "awith/errors.hpp"
#include "awith/exception_context.hpp"
#include "awith/loop.hpp"
#include "awith/task.hpp"

namespace awith {

namespace {
std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && name ? name.get() : mangled;
}

// "std::runtime_error: boom": the exception's dynamic type, then what() when it has one.
std::string describe_exception(const std::exception_ptr& exception) {
  try {
    std::rethrow_exception(exception);
  } catch (const std::exception& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (const CancelledError& e) {
    return demangle(typeid(e).name()) + ": " + e.what();
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return type ? demangle(type->name()) : "an exception of unknown type";
  }
}

std::string describe_location(const SourceLocation& where) {
  std::string file = where.file;
  auto slash = file.find_last_of('/');
  if (slash != std::string::npos) file.erase(0, slash + 1);
  return file + ":" + std::to_string(where.line) + " in " + where.function;
}
}  // namespace

std::string ExceptionContext::describe() const {
  std::string text = message;
  if (exception) text += "\nexception: " + describe_exception(exception);
  if (!task.empty()) text += "\n" + task;
  if (where) text += "\ncallback created at " + describe_location(*where);
  return text;
}

}  // namespace awith

namespace awith::detail {

namespace {
// Debug findings go to the running loop's exception handler when that loop is in debug mode
// (another thread's debug loop does not turn this one's reports on); with no loop running, to
// stderr.
void report_debug_finding(const std::string& message) {
  if (auto* loop = EventLoop::current()) {
    if (loop->debug()) loop->call_exception_handler(ExceptionContext(message));
  } else {
    EventLoop::default_exception_handler(ExceptionContext(message));
  }
}

// The first word of a coroutine frame is its resume function on g++ and clang; its symbol names
// the coroutine (the executable needs -rdynamic for its own symbols).
std::string coroutine_name(std::coroutine_handle<> frame) {
  void* resume_fn = *static_cast<void**>(frame.address());
  Dl_info info{};
  if (dladdr(resume_fn, &info) && info.dli_sname) {
    std::string name = demangle(info.dli_sname);
    auto cut = name.find(" [clone");
    if (cut != std::string::npos) name.resize(cut);
    for (const char* suffix : {".resume", ".actor"}) {
      auto at = name.rfind(suffix);
      if (at != std::string::npos) name.resize(at);
    }
    return name;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "<coroutine at %p>", resume_fn);
  return buf;
}
}  // namespace

void report_never_awaited(std::coroutine_handle<> frame) noexcept {
  try {
    report_debug_finding("coroutine " + coroutine_name(frame) + " was never awaited");
  } catch (...) {
  }
}

}  // namespace awith::detail

namespace awith::detail {
void report_unclosed(const char* what) noexcept {
  try {
    report_debug_finding(what);
  } catch (...) {
  }
}
}  // namespace awith::detail

namespace awith::detail {
void report_entered_not_exited(const char* mangled_type) noexcept {
  try {
    report_debug_finding("async context manager " + demangle(mangled_type) +
                         " was entered and destroyed without its aexit having run");
  } catch (...) {
  }
}
}  // namespace awith::detail
