// StreamReader, StreamWriter and connecting (open_connection, open_unix_connection).
#include "awith/stream.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "awith/io_wait.hpp"
#include "awith/thread.hpp"
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

struct AddrInfo {
  int family, socktype, protocol;
  SocketAddress address;
};

// Closes the fd unless it was released to a transport.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

// Connects one socket to `addr`; returns the connected fd or throws the attempt's OSError.
Task<int> connect_one(const AddrInfo& addr) {
  FdGuard sock{::socket(addr.family, addr.socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, addr.protocol)};
  if (sock.fd < 0) throw_os_error(errno, "socket");
  if (::connect(sock.fd, addr.address.data(), addr.address.size()) < 0) {
    if (errno != EINPROGRESS && errno != EAGAIN) raise_connect_error(errno, addr.address);
    FdWatch watch(sock.fd);
    co_await watch.wait_writable();
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    watch.detach();
    if (err != 0) raise_connect_error(err, addr.address);
  }
  co_return sock.release();
}

// Tries each address in turn; the first that accepts wins.
Task<int> connect_first(const std::vector<AddrInfo>& addrs) {
  std::vector<std::exception_ptr> errors;
  std::string messages;
  for (const auto& a : addrs) {
    try {
      int fd = co_await connect_one(a);
      if (a.family != AF_UNIX) {
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      co_return fd;
    } catch (const std::exception& e) {
      errors.push_back(std::current_exception());
      messages += (messages.empty() ? "" : ", ") + std::string(e.what());
    }
  }
  if (errors.empty()) throw_os_error(EADDRNOTAVAIL, std::string("open_connection(): no address to connect to"));
  // asyncio: one error, or the same error for every address, is raised as is.
  bool same = true;
  for (auto& e : errors) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      try {
        std::rethrow_exception(errors.front());
      } catch (const std::exception& first) {
        same = same && std::string(x.what()) == first.what();
      }
    }
  }
  if (same) std::rethrow_exception(errors.front());
  messages.insert(0, "Multiple exceptions: ");
  std::rethrow_exception(std::make_exception_ptr(OSError(0, messages)));
}

// Connects within options.connect_timeout, then makes the stream and, with options.ssl, runs the
// TLS handshake (checking server_hostname). Arguments by reference: the caller awaits it at once.
Task<StreamPair> connect_any(const std::vector<AddrInfo>& addrs, const StreamOptions& options,
                             std::string server_hostname) {
  int fd = -1;
  if (options.connect_timeout) {
    co_await async_with(timeout(*options.connect_timeout),
                        [&]() -> Task<void> { fd = co_await connect_first(addrs); });
  } else {
    fd = co_await connect_first(addrs);
  }
  StreamPair pair = make_stream(fd, options);
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
  std::vector<AddrInfo> addrs;
  // A numeric address needs no resolver; names go to getaddrinfo on the default executor, which
  // blocks (files, DNS) and must not run on the loop.
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    addrs.push_back({AF_INET, SOCK_STREAM, IPPROTO_TCP, SocketAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4)});
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    addrs.push_back({AF_INET6, SOCK_STREAM, IPPROTO_TCP, SocketAddress(reinterpret_cast<sockaddr*>(&v6), sizeof v6)});
  } else {
    // A named awaitable: g++ 12 destroys a capturing lambda temporary of a co_await expression twice.
    auto resolving = to_thread([host, port] {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_ADDRCONFIG;
      addrinfo* res = nullptr;
      std::string service = std::to_string(port);
      int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
      if (rc != 0) throw GaiError(rc, "getaddrinfo(" + host + "): " + ::gai_strerror(rc));
      std::vector<AddrInfo> out;
      for (auto* p = res; p; p = p->ai_next)
        out.push_back({p->ai_family, p->ai_socktype, p->ai_protocol, SocketAddress(p->ai_addr, p->ai_addrlen)});
      ::freeaddrinfo(res);
      return out;
    });
    addrs = co_await resolving;
  }
  co_return co_await connect_any(addrs, options, std::move(host));
}

Task<StreamPair> open_unix_connection(std::string path, StreamOptions options) {
  if (const char* bad = detail::invalid_sizes(options)) raise_invalid(bad);
  sockaddr_un un{};
  if (path.size() >= sizeof un.sun_path) raise_invalid("open_unix_connection(): path too long");
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  std::vector<AddrInfo> addrs{{AF_UNIX, SOCK_STREAM, 0, SocketAddress(reinterpret_cast<sockaddr*>(&un), len)}};
  co_return co_await connect_any(addrs, options, std::string());
}

}  // namespace awith
