// awith::Task<T>: a lazy coroutine. Nothing runs until it is awaited (or handed to create_task);
// awaiting it transfers control symmetrically, so a chain of any depth uses constant stack.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "awith/errors.hpp"

namespace awith {

template <class T = void>
class Task;

namespace detail {

// Coroutine frames are recycled through per-thread free lists by size class: a frame allocation
// is the dominant cost of awaiting a nested Task, and most frames have a handful of sizes.
// Sanitizer builds bypass the pool so that ASan still sees every use-after-free.
#if defined(__SANITIZE_ADDRESS__)
#define AWITH_FRAME_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AWITH_FRAME_POOL 0
#endif
#endif
#ifndef AWITH_FRAME_POOL
#define AWITH_FRAME_POOL 1
#endif

struct FramePool {
  static constexpr std::size_t kGranule = 16;
  static constexpr std::size_t kClasses = 128;  // blocks up to 2 KiB are pooled
  struct FreeBlock {
    FreeBlock* next;
  };
  // Plain data, constant-initialised: the fast path is a direct TLS access with no init guard.
  struct Lists {
    FreeBlock* heads[kClasses];
    unsigned counts[kClasses];
  };
  static void* allocate(std::size_t size) {
#if AWITH_FRAME_POOL
    std::size_t c = (size - 1) / kGranule;
    if (c < kClasses) {
      if (FreeBlock* b = lists.heads[c]) {
        lists.heads[c] = b->next;
        --lists.counts[c];
        return b;
      }
    }
#endif
    return allocate_slow(size);
  }
  static void deallocate(void* p, std::size_t size) noexcept {
#if AWITH_FRAME_POOL
    std::size_t c = (size - 1) / kGranule;
    if (c < kClasses && lists.counts[c] < kMaxPerClass) {
      auto* b = static_cast<FreeBlock*>(p);
      b->next = lists.heads[c];
      lists.heads[c] = b;
      ++lists.counts[c];
      return;
    }
#endif
    deallocate_slow(p, size);
  }
  static void* allocate_slow(std::size_t size);
  static void deallocate_slow(void* p, std::size_t size) noexcept;
  static constexpr unsigned kMaxPerClass = 4096;
  static thread_local constinit Lists lists;
};

struct PromiseBase {
  std::coroutine_handle<> continuation;
  std::exception_ptr exception;

  static void* operator new(std::size_t size) { return FramePool::allocate(size); }
  static void operator delete(void* p, std::size_t size) noexcept { FramePool::deallocate(p, size); }

  std::suspend_always initial_suspend() noexcept { return {}; }

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto next = h.promise().continuation;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { exception = std::current_exception(); }
  void rethrow_if_failed() const {
    if (exception) std::rethrow_exception(exception);
  }
};

template <class T>
struct Promise : PromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <class U = T>
    requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    rethrow_if_failed();
    return std::move(*value);
  }
};

template <class T>
struct Promise<T&> : PromiseBase {
  T* value = nullptr;
  Task<T&> get_return_object() noexcept;
  void return_value(T& v) noexcept { value = &v; }
  T& take() {
    rethrow_if_failed();
    return *value;
  }
};

template <>
struct Promise<void> : PromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_failed(); }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using value_type = T;
  using handle_type = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  explicit Task(handle_type h) noexcept : coro_(h) {}
  Task(Task&& other) noexcept : coro_(std::exchange(other.coro_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      destroy();
      coro_ = std::exchange(other.coro_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { destroy(); }

  bool valid() const noexcept { return static_cast<bool>(coro_); }
  bool done() const noexcept { return coro_ && coro_.done(); }

  struct Awaiter {
    handle_type coro;
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
      coro.promise().continuation = awaiting;
      return coro;
    }
    T await_resume() { return coro.promise().take(); }
  };

  // A Task runs once: awaiting an empty, running or finished Task is a usage error.
  Awaiter operator co_await() && { return Awaiter{checked_for_await()}; }
  Awaiter operator co_await() & { return Awaiter{checked_for_await()}; }

  // For the runtime: give up ownership of the frame (create_task adopts it).
  handle_type release() noexcept { return std::exchange(coro_, {}); }

 private:
  handle_type checked_for_await() {
    if (!coro_) throw InvalidStateError("awaiting an empty awith::Task (moved-from or default)");
    if (coro_.promise().continuation || coro_.done())
      throw InvalidStateError("an awith::Task can be awaited only once");
    return coro_;
  }
  void destroy() noexcept;

  handle_type coro_;
};

namespace detail {
template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<Task<T>> = true;

// Reports a Task destroyed without ever having run (debug mode; defined in src/debug.cpp).
void report_never_awaited(std::coroutine_handle<> frame) noexcept;
extern std::atomic<bool> g_debug_enabled;  // true while any debug loop exists (src/loop.cpp)

template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>{std::coroutine_handle<Promise<T>>::from_promise(*this)};
}
template <class T>
Task<T&> Promise<T&>::get_return_object() noexcept {
  return Task<T&>{std::coroutine_handle<Promise<T&>>::from_promise(*this)};
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>{std::coroutine_handle<Promise<void>>::from_promise(*this)};
}
}  // namespace detail

template <class T>
void Task<T>::destroy() noexcept {
  if (!coro_) return;
  if (detail::g_debug_enabled && !coro_.promise().continuation && !coro_.done())
    detail::report_never_awaited(coro_);
  coro_.destroy();
  coro_ = {};
}

}  // namespace awith
