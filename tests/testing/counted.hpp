// Counted resources for the cancellation sweeps: managers that log what they did to a Ledger, which
// also counts the resources they still hold.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "awith/awith.hpp"
#include "awith/testing.hpp"
#include "support/trace.hpp"

namespace awith::test {

using namespace std::chrono_literals;

// One line of a Ledger. (Constructed, not aggregate-initialised: see SweepPoint.)
struct LedgerEvent {
  enum class Kind {
    cancel,         // the sweep cancelled the root task (SweepOptions::on_cancel)
    acquired,       // a manager's aenter took its resource (or a callback was registered)
    exit_called,    // its aexit was called with `exception` (a callback: "-")
    exit_finished,  // the awaits of its cleanup completed
    exit_raised,    // the awaits of its cleanup raised `exception`
    released,       // its resource was given back
    done,           // a body or a block ran to its end
    raised,         // a block raised `exception`
  };
  LedgerEvent(Kind kind, std::string name, std::string exception = {})
      : kind(kind), name(std::move(name)), exception(std::move(exception)) {}
  Kind kind;
  std::string name;
  std::string exception;
};

class Ledger {
 public:
  using Kind = LedgerEvent::Kind;

  void reset() {
    events_.clear();
    live_ = 0;
  }
  void cancel() { events_.emplace_back(Kind::cancel, "root"); }
  void acquire(const std::string& name) {
    ++live_;
    events_.emplace_back(Kind::acquired, name);
  }
  void release(const std::string& name) {
    --live_;
    events_.emplace_back(Kind::released, name);
  }
  void exit_called(const std::string& name, const std::exception_ptr& e) {
    events_.emplace_back(Kind::exit_called, name, exception_name(e));
  }
  void callback_called(const std::string& name) { events_.emplace_back(Kind::exit_called, name, "-"); }
  void exit_finished(const std::string& name) { events_.emplace_back(Kind::exit_finished, name); }
  void exit_raised(const std::string& name, const std::exception_ptr& e) {
    events_.emplace_back(Kind::exit_raised, name, exception_name(e));
  }
  void done(const std::string& name) { events_.emplace_back(Kind::done, name); }
  void raised(const std::string& name, const std::exception_ptr& e) {
    events_.emplace_back(Kind::raised, name, exception_name(e));
  }

  int live() const noexcept { return live_; }
  const std::vector<LedgerEvent>& events() const noexcept { return events_; }
  // The position of the cancel in the log; the log's size when there was none.
  std::size_t cancel_at() const noexcept {
    for (std::size_t i = 0; i < events_.size(); ++i)
      if (events_[i].kind == Kind::cancel) return i;
    return events_.size();
  }
  // The position of the first event of `kind` about `name`, if any.
  std::optional<std::size_t> find(Kind kind, const std::string& name) const {
    for (std::size_t i = 0; i < events_.size(); ++i)
      if (events_[i].kind == kind && events_[i].name == name) return i;
    return std::nullopt;
  }
  // The names of the events of `kind`, in order, keeping those `keep` accepts.
  template <class Keep>
  std::vector<std::string> names(Kind kind, Keep keep) const {
    std::vector<std::string> out;
    for (const auto& e : events_)
      if (e.kind == kind && keep(e.name)) out.push_back(e.name);
    return out;
  }
  std::vector<std::string> names(Kind kind) const {
    return names(kind, [](const std::string&) { return true; });
  }
  std::string str() const {
    static const char* const kinds[] = {"CANCEL",   "acquired", "exit called", "exit finished",
                                        "exit raised", "released", "done",     "raised"};
    std::string out = "ledger:";
    for (const auto& e : events_) {
      out += "\n  " + std::string(kinds[static_cast<int>(e.kind)]) + " " + e.name;
      if (!e.exception.empty()) out += " " + e.exception;
    }
    return out;
  }

 private:
  std::vector<LedgerEvent> events_;
  int live_ = 0;
};

// Gives a resource back when it goes out of scope: a cleanup releases whatever its awaits do.
class Held {
 public:
  Held(Ledger& ledger, std::string name) : ledger_(ledger), name_(std::move(name)) {}
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  ~Held() { ledger_.release(name_); }

 private:
  Ledger& ledger_;
  std::string name_;
};

// The awaits of a cleanup (two: say a flush and a goodbye), logging how they ended.
inline Task<void> cleanup_awaits(Ledger& ledger, std::string name) {
  try {
    co_await sleep(1ms);
    co_await sleep(1ms);
  } catch (...) {
    ledger.exit_raised(name, std::current_exception());
    throw;
  }
  ledger.exit_finished(name);
}

// A class manager with a counted resource. aenter takes it after its one await (a cancelled aenter
// holds nothing); aexit gives it back whatever happens to its cleanup's two awaits.
class Resource {
 public:
  Resource(Ledger& ledger, std::string name) : ledger_(ledger), name_(std::move(name)) {}
  Task<Resource*> aenter() {
    co_await sleep(1ms);
    ledger_.acquire(name_);
    co_return this;
  }
  Task<void> aexit(std::exception_ptr e) {
    ledger_.exit_called(name_, e);
    Held held(ledger_, name_);
    co_await cleanup_awaits(ledger_, name_);
  }

 private:
  Ledger& ledger_;
  std::string name_;
};

// The same as a generator-based manager: one await before the co_yield, the cleanup's two after
// it; the body's exception is rethrown once the cleanup is done (Python's try/finally).
inline AsyncContextManager<std::string> counted(Ledger& ledger, std::string name) {
  co_await sleep(1ms);
  ledger.acquire(name);
  std::exception_ptr body_error;
  try {
    co_yield name;
  } catch (...) {
    body_error = std::current_exception();
  }
  ledger.exit_called(name, body_error);
  {
    Held held(ledger, name);
    co_await cleanup_awaits(ledger, name);
  }
  if (body_error) std::rethrow_exception(body_error);
}

// A generator-based manager that absorbs whatever its body raised (contextlib.suppress with a
// cleanup): the block then ends normally.
inline AsyncContextManager<void> absorbing(Ledger& ledger, std::string name) {
  co_await sleep(1ms);
  ledger.acquire(name);
  std::exception_ptr body_error;
  try {
    co_yield {};
  } catch (...) {
    body_error = std::current_exception();
  }
  ledger.exit_called(name, body_error);
  Held held(ledger, name);
  co_await cleanup_awaits(ledger, name);
}

// Registers an AsyncExitStack callback that holds a counted resource until it has run.
inline void push_counted_callback(AsyncExitStack& stack, Ledger& ledger, std::string name) {
  ledger.acquire(name);
  stack.push_async_callback([&ledger, name]() -> Task<void> {
    ledger.callback_called(name);
    Held held(ledger, name);
    co_await cleanup_awaits(ledger, name);
  });
}

// Awaits `block` and logs how it ended, under `name`.
inline Task<void> logged(Ledger& ledger, std::string name, Task<void> block) {
  try {
    co_await std::move(block);
  } catch (...) {
    ledger.raised(name, std::current_exception());
    throw;
  }
  ledger.done(name);
}

// SweepOptions whose cancels are logged to `ledger`.
inline awith::testing::SweepOptions logging_cancels(Ledger& ledger) {
  awith::testing::SweepOptions options;
  options.on_cancel = [&ledger](const awith::testing::SweepPoint&) { ledger.cancel(); };
  return options;
}

}  // namespace awith::test
