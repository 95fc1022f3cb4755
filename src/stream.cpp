// StreamReader, StreamWriter and connecting (open_connection, open_unix_connection).
#include "awith/stream.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "awith/cancel_scope.hpp"
#include "awith/dns.hpp"
#include "awith/io_wait.hpp"
#include "awith/sync.hpp"
#include "awith/task_group.hpp"
#include "awith/timeout.hpp"
#include "stream_options.hpp"

namespace awith {

// The throws of the coroutines below go through these functions: g++ 12 destroys a temporary
// std::string of a throw expression inside a coroutine twice.
namespace {
[[noreturn]] void raise_limit_overrun(bool found, std::size_t consumed) {
  if (found) throw LimitOverrunError("Separator is found, but chunk is longer than limit", consumed);
  throw LimitOverrunError("Separator is not found, and chunk exceed the limit", consumed);
}
[[noreturn]] void raise_incomplete(detail::ByteBuffer& buf, std::optional<std::size_t> expected) {
  std::string partial = buf.take(buf.size());
  throw IncompleteReadError(std::move(partial), expected);
}
[[noreturn]] void raise_invalid(const char* what) { throw std::invalid_argument(what); }
[[noreturn]] void raise_connect_error(int err, const SocketAddress& to) { throw_os_error(err, "connect to " + to.to_string()); }
}  // namespace

// --- StreamReader ------------------------------------------------------------------------------

using detail::StreamTransport;

Task<std::string> StreamReader::read(std::ptrdiff_t n) {
  auto t = t_;
  co_await checkpoint();  // buffered data must not let a busy reader ignore cancellation
  if (n == 0) co_return std::string();
  auto& buf = t->read_buffer();
  if (n < 0) {
    for (;;) {
      auto r = t->recv_some();
      if (r == StreamTransport::Recv::eof) break;
      if (r == StreamTransport::Recv::again) co_await t->wait_readable();
    }
    co_return buf.take(buf.size());
  }
  while (buf.empty()) {
    auto r = t->recv_some();
    if (r == StreamTransport::Recv::eof) co_return std::string();
    if (r == StreamTransport::Recv::again) co_await t->wait_readable();
  }
  co_return buf.take(std::min(buf.size(), static_cast<std::size_t>(n)));
}

Task<std::size_t> StreamReader::read_into(std::span<char> dest) {
  auto* t = t_.get();
  co_await checkpoint();
  if (dest.empty()) co_return 0;
  auto& buf = t->read_buffer();
  if (!buf.empty()) {
    std::size_t n = std::min(buf.size(), dest.size());
    std::memcpy(dest.data(), buf.data(), n);
    buf.consume(n);
    co_return n;
  }
  for (;;) {
    std::size_t got = 0;
    auto r = t->recv_some(dest, got);
    if (r == StreamTransport::Recv::data) co_return got;
    if (r == StreamTransport::Recv::eof) co_return 0;
    co_await t->wait_readable();
  }
}

Task<std::string> StreamReader::readuntil(std::string separator) {
  auto t = t_;
  co_await checkpoint();
  if (separator.empty()) raise_invalid("readuntil(): separator must not be empty");
  auto& buf = t->read_buffer();
  const std::size_t limit = t->options().limit;
  std::size_t offset = 0;
  for (;;) {
    std::string_view data = buf.view();
    if (data.size() - offset >= separator.size()) {
      std::size_t pos = data.find(separator, offset);
      if (pos != std::string_view::npos) {
        if (pos > limit) raise_limit_overrun(true, pos);
        co_return buf.take(pos + separator.size());
      }
      offset = data.size() + 1 - separator.size();
      if (offset > limit) raise_limit_overrun(false, offset);
    }
    auto r = t->recv_some();
    if (r == StreamTransport::Recv::eof) raise_incomplete(buf, std::nullopt);
    if (r == StreamTransport::Recv::again) co_await t->wait_readable();
  }
}

Task<std::string> StreamReader::readline() {
  auto t = t_;
  try {
    co_return co_await readuntil("\n");
  } catch (IncompleteReadError& e) {
    co_return std::string(e.partial());
  } catch (const LimitOverrunError& e) {
    // As asyncio: drop the overlong line (through its newline if it is buffered) and raise.
    auto& buf = t->read_buffer();
    auto data = buf.view();
    if (data.size() > e.consumed() && data[e.consumed()] == '\n') {
      buf.consume(e.consumed() + 1);
    } else {
      buf.clear();
    }
    throw;
  }
}

Task<std::string> StreamReader::readexactly(std::ptrdiff_t n) {
  if (n < 0) raise_invalid("readexactly size can not be less than zero");
  const auto size = static_cast<std::size_t>(n);
  auto t = t_;
  co_await checkpoint();
  auto& buf = t->read_buffer();
  while (buf.size() < size) {
    auto r = t->recv_some();
    if (r == StreamTransport::Recv::eof) raise_incomplete(buf, size);
    if (r == StreamTransport::Recv::again) co_await t->wait_readable();
  }
  co_return buf.take(size);
}

// --- StreamWriter ------------------------------------------------------------------------------

std::any StreamWriter::get_extra_info(std::string_view name) const {
  if (name == "peername") return t_->peername();
  if (name == "sockname") return t_->sockname();
  if (name == "socket") return t_->fd();
  if (name == "ssl_object") return t_->tls() ? std::any(SSLObject(t_->tls())) : std::any();
  return {};
}

// --- connecting --------------------------------------------------------------------------------

StreamPair make_stream(int fd, const StreamOptions& options) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  auto t = std::make_shared<StreamTransport>(fd, options);
  return StreamPair{StreamReader(t), StreamWriter(t)};
}

namespace {

// Closes the fd unless it was released to a transport.
struct FdGuard {
  int fd = -1;
  FdGuard() = default;
  explicit FdGuard(int f) noexcept : fd(f) {}
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

// Connects one socket to `addr`; returns the connected fd or throws the attempt's OSError.
Task<int> connect_one(const SocketAddress& addr) {
  FdGuard sock(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.fd < 0) throw_os_error(errno, "socket");
  if (::connect(sock.fd, addr.data(), addr.size()) < 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) raise_connect_error(errno, addr);
    FdWatch watch(sock.fd);
    co_await watch.wait_writable();
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    watch.detach();
    if (err != 0) raise_connect_error(err, addr);
  }
  co_return sock.release();
}

// What the attempts of one race share.
struct Race {
  explicit Race(const std::vector<SocketAddress>& a) : addresses(a), errors(a.size()) {}
  const std::vector<SocketAddress>& addresses;
  CancelScope scope;  // the winner cancels it: that ends the other attempts and the staggering
  FdGuard winner;
  std::size_t winner_index = 0;
  std::vector<std::exception_ptr> errors;  // by address; empty for attempts never made or cancelled
  Event failed;                            // an attempt failed: the next one starts at once
};

// A cancellation (no std::exception) leaves the attempt; its socket is closed on the way out.
Task<void> attempt(Race& race, std::size_t i) {
  try {
    int fd = co_await connect_one(race.addresses[i]);
    if (race.winner.fd >= 0) {
      ::close(fd);  // connected in the same loop iteration as the winner
    } else {
      race.winner.fd = fd;
      race.winner_index = i;
      race.scope.cancel();
    }
  } catch (const std::exception&) {
    race.errors[i] = std::current_exception();
    race.failed.set();
  }
}

// Every attempt failed: one error as it is, several in one OSError listing each (asyncio lists
// them too, but as a plain OSError even when they share an errno).
[[noreturn]] void raise_all_failed(const std::vector<std::exception_ptr>& errors) {
  std::vector<std::exception_ptr> made;
  for (const auto& e : errors)
    if (e) made.push_back(e);
  if (made.empty()) throw_os_error(EADDRNOTAVAIL, "open_connection(): no address to connect to");
  if (made.size() == 1) std::rethrow_exception(made.front());
  std::string message = "Multiple exceptions: ";
  int shared_errno = -1;
  for (std::size_t i = 0; i < made.size(); ++i) {
    // An error other than an OSError (std::bad_alloc) is no connection error: it leaves as it is.
    try {
      std::rethrow_exception(made[i]);
    } catch (const OSError& e) {
      if (i > 0) message += "; ";
      message += e.what();
      shared_errno = (shared_errno == -1 || shared_errno == e.errno_value()) ? e.errno_value() : 0;
    }
  }
  std::rethrow_exception(os_error_with_message(shared_errno, message));
}

// Races connection attempts over `addresses` (RFC 8305, section 5): the next one starts when
// `delay` has passed since the last start or when an attempt fails, whichever comes first; the
// first connection wins. Returns its fd, and its index in `won`.
Task<int> connect_race(const std::vector<SocketAddress>& addresses, std::optional<Duration> delay,
                       std::size_t& won) {
  Race race(addresses);
  co_await async_with(race.scope, [&]() -> Task<void> {
    co_await async_with(TaskGroup(), [&](TaskGroup& group) -> Task<void> {
      for (std::size_t i = 0; i < addresses.size(); ++i) {
        race.failed.clear();
        group.create_task(attempt(race, i));
        if (i + 1 == addresses.size()) break;
        if (delay) {
          co_await async_with(move_on_after(*delay), [&]() -> Task<void> { co_await race.failed.wait(); });
        } else {
          co_await race.failed.wait();
        }
      }
    });
  });
  if (race.winner.fd < 0) raise_all_failed(race.errors);
  won = race.winner_index;
  co_return race.winner.release();
}

// Connects within options.connect_timeout, then makes the stream and, with options.ssl, runs the
// TLS handshake (checking server_hostname). Arguments by reference: the caller awaits it at once.
Task<StreamPair> connect_any(const std::vector<SocketAddress>& resolved, const StreamOptions& options,
                             std::string server_hostname) {
  const std::vector<SocketAddress> addresses = interleave_by_family(resolved, options.interleave);
  FdGuard sock;
  std::size_t won = 0;
  if (options.connect_timeout) {
    co_await async_with(timeout(*options.connect_timeout), [&]() -> Task<void> {
      sock.fd = co_await connect_race(addresses, options.happy_eyeballs_delay, won);
    });
  } else {
    sock.fd = co_await connect_race(addresses, options.happy_eyeballs_delay, won);
  }
  if (addresses[won].family() != AF_UNIX) {
    int one = 1;
    ::setsockopt(sock.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (server_hostname.empty()) server_hostname = addresses[won].host();
  }
  StreamPair pair = make_stream(sock.release(), options);
  if (options.ssl) {
    SSLContext context = *options.ssl;
    std::string hostname = options.server_hostname.empty() ? std::move(server_hostname) : options.server_hostname;
    co_await pair.writer.start_tls(std::move(context), std::move(hostname), options.ssl_handshake_timeout,
                                   options.ssl_shutdown_timeout);
  }
  co_return pair;
}

}  // namespace

Task<StreamPair> open_connection(std::string host, std::uint16_t port, StreamOptions options) {
  if (const char* bad = detail::invalid_sizes(options)) raise_invalid(bad);  // before resolving and connecting
  std::vector<SocketAddress> addresses = co_await resolve(host, port);
  co_return co_await connect_any(addresses, options, std::move(host));
}

Task<StreamPair> open_connection(std::vector<SocketAddress> addresses, StreamOptions options) {
  if (const char* bad = detail::invalid_sizes(options)) raise_invalid(bad);
  co_return co_await connect_any(addresses, options, std::string());
}

Task<StreamPair> open_unix_connection(std::string path, StreamOptions options) {
  if (const char* bad = detail::invalid_sizes(options)) raise_invalid(bad);
  sockaddr_un un{};
  if (path.size() >= sizeof un.sun_path) raise_invalid("open_unix_connection(): path too long");
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  std::vector<SocketAddress> addresses;
  addresses.emplace_back(reinterpret_cast<sockaddr*>(&un), len);
  co_return co_await connect_any(addresses, options, std::string());
}

}  // namespace awith
