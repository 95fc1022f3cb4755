// Private to src/http: one pooled HTTP/1.1 connection, the connection pool, and waits bounded by a
// ClientTimeout phase.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "awith/context.hpp"
#include "awith/errors.hpp"
#include "awith/http/errors.hpp"
#include "awith/http/parser.hpp"
#include "awith/http/response.hpp"
#include "awith/http/session.hpp"
#include "awith/http/url.hpp"
#include "awith/stream.hpp"
#include "awith/sync.hpp"
#include "awith/timeout.hpp"
#include "awith/tls.hpp"

namespace awith::http::detail {

class Pool;

// The earlier of two deadlines (an absent one never expires).
inline Deadline earliest(const Deadline& a, const Deadline& b) noexcept {
  if (!a.when) return b;
  if (!b.when) return a;
  return *b.when < *a.when ? b : a;
}
inline Deadline after(std::optional<Duration> d, TimeoutPhase phase) {
  if (!d) return {std::nullopt, phase};
  return {EventLoop::running().time() + *d, phase};
}

// Awaits f() under the deadline; its expiry raises ClientTimeoutError(phase, url).
//
// The caller's own deadlines need nothing here: an enclosing scope's expiry cancels the wait and
// that scope turns the cancellation into its own error (on a tie too: the outermost cancelled scope
// owns a cancellation). This timer is armed even when the caller's deadline is nearer, as that
// scope may be rescheduled later while the wait goes on.
template <class F>
auto with_deadline(Deadline d, const URL& url, F f) -> decltype(f()) {
  using R = typename awith::detail::task_value<decltype(f())>::type;
  if (!d.when) co_return co_await f();
  bool expired = false;
  if constexpr (std::is_void_v<R>) {
    try {
      co_await async_with(timeout_at(*d.when), [&]() -> Task<void> { co_await f(); });
    } catch (const awith::TimeoutError&) {
      expired = true;
    }
    if (expired) throw ClientTimeoutError(d.phase, url.str());
  } else {
    std::optional<R> result;
    try {
      result.emplace(co_await async_with(timeout_at(*d.when), [&]() -> Task<R> { co_return co_await f(); }));
    } catch (const awith::TimeoutError&) {
      expired = true;
    }
    if (expired) throw ClientTimeoutError(d.phase, url.str());
    co_return std::move(*result);
  }
}

struct Connection {
  Connection(std::weak_ptr<Pool> p, std::string k, StreamPair s, const ParserLimits& limits)
      : pool(std::move(p)), key(std::move(k)), stream(std::move(s)), parser(limits) {}

  std::weak_ptr<Pool> pool;
  std::string key;  // URL::origin()
  StreamPair stream;
  ResponseParser parser;
  TimePoint idle_since{};
  bool reused = false;  // served a request before this one
  // Some byte of the current request was accepted by the kernel: it may have reached the server,
  // so a failure after it only allows a retry where running the request twice is safe.
  bool request_left = false;

  awith::detail::StreamTransport& transport() const noexcept { return *stream.reader.transport(); }
  // Received bytes the parser has not consumed.
  std::string_view input() const noexcept { return transport().read_buffer().view(); }
  void consume(std::size_t n) noexcept { transport().read_buffer().consume(n); }
  // Receives more bytes into input(); false at EOF. Connection failures raise
  // ClientConnectionError, an expired deadline ClientTimeoutError.
  Task<bool> receive(Deadline deadline, const URL& url);
  // Queues bytes for sending (never blocks) and waits while the send buffer is above its mark.
  Task<void> send(std::string_view head, std::string_view body, Deadline deadline, const URL& url);
};

class Pool : public std::enable_shared_from_this<Pool> {
 public:
  Pool(const ConnectorOptions& options, const ParserLimits& limits) : options_(options), limits_(limits) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool();

  // An idle connection to url's origin, or a new one (within the limits, waiting for a slot).
  // fresh: never an idle one (the retry after a stale keep-alive connection failed).
  Task<ConnectionPtr> acquire(const URL& url, Deadline connect, std::optional<Duration> sock_connect, bool fresh);
  // Puts a connection whose response ended cleanly back as idle.
  void release(ConnectionPtr c) noexcept;
  // Closes a connection at once and frees its slot (the ConnectionPtr deleter).
  void discard(Connection* c) noexcept;
  // Closes the idle connections gracefully (bounded) and refuses new requests.
  Task<void> close(Duration bound);
  // Aborts the idle connections (a session destroyed without close()).
  void abort_idle() noexcept;

  bool closed() const noexcept { return closed_; }
  std::size_t open() const noexcept { return open_; }
  std::size_t idle() const noexcept;
  PoolStatistics& statistics() noexcept { return statistics_; }

 private:
  // The client context for https:// URLs, made from TlsOptions on first use.
  const SSLContext& tls_context();
  // Arms the keep-alive sweep when idle connections exist: it closes those idle for longer than
  // keepalive_timeout, so an unused session does not hold sockets open.
  void arm_sweep();
  void sweep() noexcept;
  bool has_room(const std::string& key) const;
  ConnectionPtr take_idle(const std::string& key);
  bool evict_oldest_idle();
  void changed() noexcept;

  ConnectorOptions options_;
  ParserLimits limits_;
  std::optional<SSLContext> tls_;
  std::unordered_map<std::string, std::vector<ConnectionPtr>> idle_;
  std::unordered_map<std::string, std::size_t> open_per_host_;
  std::size_t open_ = 0;
  std::size_t waiting_ = 0;
  TimerHandle sweep_timer_;
  bool sweep_armed_ = false;
  Event changed_;  // set (and cleared) when a slot or an idle connection may have become available
  bool closed_ = false;
  PoolStatistics statistics_;
};

}  // namespace awith::http::detail
