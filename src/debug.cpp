#include <cxxabi.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "awith/loop.hpp"
#include "awith/task.hpp"

namespace awith::detail {

namespace {
// The first word of a coroutine frame is its resume function on g++ and clang; its symbol names
// the coroutine (the executable needs -rdynamic for its own symbols).
std::string coroutine_name(std::coroutine_handle<> frame) {
  void* resume_fn = *static_cast<void**>(frame.address());
  Dl_info info{};
  if (dladdr(resume_fn, &info) && info.dli_sname) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> demangled(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), std::free);
    std::string name = status == 0 && demangled ? demangled.get() : info.dli_sname;
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
    std::string message = "coroutine " + coroutine_name(frame) + " was never awaited";
    if (auto* loop = EventLoop::current()) {
      loop->call_exception_handler(message);
    } else {
      std::fprintf(stderr, "awith: %s\n", message.c_str());
    }
  } catch (...) {
  }
}

}  // namespace awith::detail

namespace awith::detail {
void report_unclosed(const char* what) noexcept {
  try {
    if (auto* loop = EventLoop::current()) {
      loop->call_exception_handler(what);
    } else {
      std::fprintf(stderr, "awith: %s\n", what);
    }
  } catch (...) {
  }
}
}  // namespace awith::detail

namespace awith::detail {
void report_entered_not_exited(const char* mangled_type) noexcept {
  try {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled_type, nullptr, nullptr, &status), std::free);
    std::string message = std::string("async context manager ") + (status == 0 && name ? name.get() : mangled_type) +
                          " was entered and destroyed without its aexit having run";
    report_unclosed(message.c_str());
  } catch (...) {
  }
}
}  // namespace awith::detail
