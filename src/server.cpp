#include "awith/server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <system_error>

#include "awith/cancel_scope.hpp"
#include "awith/context.hpp"
#include "awith/tasks.hpp"
#include "awith/thread.hpp"

namespace awith {
namespace detail {

// The throws of coroutines go through functions: g++ 12 destroys a temporary std::string of a
// throw expression inside a coroutine twice.
[[noreturn]] static void raise_runtime(const char* what) { throw RuntimeError(what); }
[[noreturn]] static void raise_invalid_path() { throw std::invalid_argument("start_unix_server(): bad socket path"); }

class ServerState : public std::enable_shared_from_this<ServerState> {
 public:
  ServerState(ConnectionHandler handler, ServerOptions options)
      : loop_(&EventLoop::running()), handler_(std::move(handler)), options_(options) {}
  ~ServerState() {
    stop_accept_retry();
    close_listeners();
  }

  struct Listener : IoWatch {
    ServerState* owner = nullptr;
    SocketAddress address;
    bool registered = false;
  };
  // An accepted connection, linked while its task runs.
  struct Connection {
    Connection* next = nullptr;
    Connection* prev = nullptr;
    std::shared_ptr<StreamTransport> transport;
  };

  void add_listener(int fd) {
    auto l = std::make_unique<Listener>();
    l->fd = fd;
    l->owner = this;
    l->on_event = &on_listener_event;
    l->address = SocketAddress::local_of(fd);
    listeners_.push_back(std::move(l));
  }

  bool is_serving() const noexcept { return serving_; }
  bool closed() const noexcept { return closed_; }

  void start_serving() {
    if (closed_) throw RuntimeError("start_serving(): the server is closed");
    if (serving_) return;
    for (auto& l : listeners_) {
      if (::listen(l->fd, options_.backlog) < 0) throw_os_error(errno, "listen on " + l->address.to_string());
    }
    for (auto& l : listeners_) {
      loop_->add_watch(l.get());
      l->registered = true;
      l->readable = true;  // connections may already wait in the backlog
    }
    serving_ = true;
    accept_all();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    serving_ = false;
    stop_accept_retry();
    close_listeners();
    forever_waiters_.wake_all();
    if (active_ == 0) closed_waiters_.wake_all();
  }

  void close_clients() {
    for (auto* c = connections_; c; c = c->next) c->transport->close();
  }
  void abort_clients() {
    for (auto* c = connections_; c; c = c->next) c->transport->abort();
  }

  std::vector<ListenSocket> sockets() const {
    std::vector<ListenSocket> out;
    for (auto& l : listeners_) out.push_back({l->fd, l->address});
    return out;
  }
  std::size_t active() const noexcept { return active_; }



  Task<void> serve_forever();
  Task<void> wait_closed();

  void set_unix_path(std::string path) { unix_path_ = std::move(path); }

 private:
  static void on_listener_event(IoWatch* w) {
    auto* l = static_cast<Listener*>(w);
    if (l->owner->serving_ && !l->owner->accept_paused_) l->owner->accept_from(*l);
  }

  // The accept retry after EMFILE/ENOMEM is a timer embedded here: pausing needs no allocation.
  struct AcceptRetry : TimerNode {
    ServerState* owner = nullptr;
  };
  static void on_accept_retry(TimerNode* n) {
    auto* self = static_cast<AcceptRetry*>(n)->owner;
    self->accept_paused_ = false;
    self->accept_all();
  }
  void stop_accept_retry() noexcept {
    if (accept_retry_.armed()) loop_->remove_timer(&accept_retry_);
  }

  void accept_all() {
    for (auto& l : listeners_) {
      if (!serving_ || accept_paused_) return;
      accept_from(*l);
    }
  }

  void accept_from(Listener& l) {
    while (l.readable) {
      sockaddr_storage addr{};
      socklen_t len = sizeof addr;
      int fd = ::accept4(l.fd, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        if (addr.ss_family != AF_UNIX) {
          int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        start_connection(fd);
        continue;
      }
      switch (errno) {
        case EAGAIN:
          l.readable = false;
          return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case EPERM:
          continue;  // that one connection is gone; the next may be fine
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM: {
          // Out of descriptors or memory: retrying at once would spin. Pause, as asyncio does.
          int err = errno;
          loop_->call_exception_handler(
              ExceptionContext("socket.accept() out of system resource on " + l.address.to_string() + "; pausing accept",
                               std::make_exception_ptr(std::system_error(err, std::generic_category(), "accept"))));
          accept_paused_ = true;
          loop_->add_timer(&accept_retry_, detail::deadline_after(loop_->time(), options_.accept_retry_delay));
          return;
        }
        default: {
          int err = errno;
          loop_->call_exception_handler(
              ExceptionContext("accept() on " + l.address.to_string() + " failed",
                               std::make_exception_ptr(std::system_error(err, std::generic_category(), "accept"))));
          l.readable = false;
          return;
        }
      }
    }
  }

  void start_connection(int fd) {
    try {
      create_task(run_connection(shared_from_this(), fd));
    } catch (const std::exception&) {
      ::close(fd);
      loop_->call_exception_handler(ExceptionContext("could not start a connection task", std::current_exception()));
    }
  }

  // Links a connection for its lifetime and wakes wait_closed() when the last one ends.
  struct Attached {
    ServerState* s;
    Connection node;
    Attached(ServerState* st, std::shared_ptr<StreamTransport> t) : s(st) {
      node.transport = std::move(t);
      node.next = s->connections_;
      if (s->connections_) s->connections_->prev = &node;
      s->connections_ = &node;
      ++s->active_;
    }
    Attached(const Attached&) = delete;
    ~Attached() {
      (node.prev ? node.prev->next : s->connections_) = node.next;
      if (node.next) node.next->prev = node.prev;
      if (--s->active_ == 0 && s->closed_) s->closed_waiters_.wake_all();
    }
  };


  static Task<void> run_connection(std::shared_ptr<ServerState> s, int fd);
  static Task<bool> tls_handshake(ServerState& s, StreamWriter& writer);

  void close_listeners() noexcept {
    for (auto& l : listeners_) {
      if (l->registered) loop_->remove_watch(l.get());
      ::close(l->fd);
    }
    listeners_.clear();
    if (!unix_path_.empty()) {
      ::unlink(unix_path_.c_str());
      unix_path_.clear();
    }
  }

  EventLoop* loop_;
  ConnectionHandler handler_;
  ServerOptions options_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  Connection* connections_ = nullptr;
  std::size_t active_ = 0;
  IoWaitList forever_waiters_;
  IoWaitList closed_waiters_;
  AcceptRetry accept_retry_{{TimePoint{}, 0, TimerNode::kNotArmed, &on_accept_retry}, this};
  std::string unix_path_;
  bool serving_ = false;
  bool closed_ = false;
  bool serving_forever_ = false;
  bool accept_paused_ = false;
};

Task<void> ServerState::serve_forever() {
  auto self = shared_from_this();
  if (serving_forever_) raise_runtime("server is already being awaited on serve_forever()");
  if (closed_) raise_runtime("serve_forever(): the server is closed");
  start_serving();
  serving_forever_ = true;
  std::exception_ptr failure;
  try {
    while (!closed_) co_await forever_waiters_.wait();
  } catch (...) {
    failure = std::current_exception();
  }
  serving_forever_ = false;
  if (failure) {
    close();
    {
      CleanupScope cleanup;
      co_await wait_closed();
    }
    std::rethrow_exception(failure);
  }
}

Task<void> ServerState::wait_closed() {
  auto self = shared_from_this();
  while (!closed_ || active_ > 0) co_await closed_waiters_.wait();
}

// The connection failed while flushing: it is closed either way.
static Task<void> wait_closed_quietly(StreamWriter& writer) {
  try {
    co_await writer.wait_closed();
  } catch (const std::exception&) {
  }
}

// The server side of the TLS handshake; false when it failed (the connection is aborted). Like
// asyncio, a failed handshake is no error of the server: it is reported in debug mode only.
Task<bool> ServerState::tls_handshake(ServerState& s, StreamWriter& writer) {
  SSLContext context = *s.options_.ssl;
  std::string no_hostname;
  std::exception_ptr failure;
  try {
    co_await writer.start_tls(std::move(context), std::move(no_hostname), s.options_.ssl_handshake_timeout,
                              s.options_.ssl_shutdown_timeout);
  } catch (...) {
    failure = std::current_exception();
  }
  if (!failure) co_return true;
  if (is_cancelled_error(failure)) std::rethrow_exception(failure);
  if (s.loop_->debug()) {
    s.loop_->call_exception_handler(
        ExceptionContext("TLS handshake with " + writer.peername().to_string() + " failed", failure));
  }
  co_return false;
}

Task<void> ServerState::run_connection(std::shared_ptr<ServerState> s, int fd) {
  StreamPair pair;
  try {
    StreamOptions options;
    options.limit = s->options_.limit;
    options.write_high_water = s->options_.write_high_water;
    options.write_low_water = s->options_.write_low_water;
    pair = make_stream(fd, options);
  } catch (const std::exception&) {
    s->loop_->call_exception_handler(
        ExceptionContext("could not register an accepted connection", std::current_exception()));
    co_return;
  }
  Attached attached(s.get(), pair.writer.transport());
  if (s->options_.ssl && !co_await tls_handshake(*s, pair.writer)) co_return;
  std::exception_ptr failure;
  try {
    co_await s->handler_(pair.reader, pair.writer);
  } catch (...) {
    failure = std::current_exception();
  }
  bool cancelled = failure && is_cancelled_error(failure);
  if (failure && !cancelled) {
    s->loop_->call_exception_handler(ExceptionContext(
        "Unhandled exception in client_connected_cb (peer " + pair.writer.peername().to_string() + ")", failure));
  }
  if (cancelled) {
    pair.writer.abort();  // no close_notify: the peer must not take a cut-off reply for a whole one
  } else if (s->options_.ssl) {
    // Flushing and close_notify run shielded from the server's own shutdown, but never longer
    // than ssl_shutdown_timeout; then the connection is aborted.
    pair.writer.close();
    co_await async_with(CancelScope::shielded(s->options_.ssl_shutdown_timeout),
                        [&](CancelScope&) -> Task<void> { co_await wait_closed_quietly(pair.writer); });
    pair.writer.abort();
  } else {
    pair.writer.close();
    CleanupScope cleanup;
    co_await wait_closed_quietly(pair.writer);
  }
  if (cancelled) std::rethrow_exception(failure);
}

}  // namespace detail

// --- Server ------------------------------------------------------------------------------------

detail::ServerState& Server::state() const {
  if (!s_) throw InvalidStateError("empty awith::Server");
  return *s_;
}

bool Server::is_serving() const noexcept { return s_ && s_->is_serving(); }
void Server::start_serving() { state().start_serving(); }
Task<void> Server::serve_forever() { return state().serve_forever(); }
void Server::close() { state().close(); }
Task<void> Server::wait_closed() { return state().wait_closed(); }
void Server::close_clients() { state().close_clients(); }
void Server::abort_clients() { state().abort_clients(); }
std::vector<ListenSocket> Server::sockets() const { return state().sockets(); }
std::size_t Server::active_connections() const noexcept { return s_ ? s_->active() : 0; }

Task<Server&> Server::aenter() { co_return *this; }

Task<void> Server::aexit(std::exception_ptr) {
  auto s = s_;
  s->close();
  co_await s->wait_closed();
}

// --- start_server ------------------------------------------------------------------------------

namespace {

struct BindAddress {
  int family;
  SocketAddress address;
};

int make_listener(const BindAddress& a, const ServerOptions& options) {
  int fd = ::socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_os_error(errno, "socket");
  int one = 1;
  if (a.family != AF_UNIX) {
    if (options.reuse_address) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
      int err = errno;
      ::close(fd);
      throw_os_error(err, "setsockopt(SO_REUSEPORT)");
    }
    if (a.family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (::bind(fd, a.address.data(), a.address.size()) < 0) {
    int err = errno;
    ::close(fd);
    throw_os_error(err, "could not bind on address " + a.address.to_string());
  }
  return fd;
}

// Options by reference: the callers await it at once.
Task<Server> serve_on(ConnectionHandler handler, std::vector<BindAddress> addrs, const ServerOptions& options,
                      std::string unix_path) {
  auto state = std::make_shared<detail::ServerState>(std::move(handler), options);
  for (const auto& a : addrs) state->add_listener(make_listener(a, options));
  if (!unix_path.empty()) state->set_unix_path(std::move(unix_path));
  Server server(state);
  if (options.start_serving) server.start_serving();
  co_return server;
}

}  // namespace

Task<Server> start_server(ConnectionHandler handler, std::string host, std::uint16_t port, ServerOptions options) {
  std::vector<BindAddress> addrs;
  sockaddr_in v4{};
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    addrs.push_back({AF_INET, SocketAddress(reinterpret_cast<sockaddr*>(&v4), sizeof v4)});
  } else if (::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    addrs.push_back({AF_INET6, SocketAddress(reinterpret_cast<sockaddr*>(&v6), sizeof v6)});
  } else {
    // getaddrinfo may block (files, DNS): it runs on the default executor.
    // A named awaitable: g++ 12 destroys a capturing lambda temporary of a co_await expression twice.
    auto resolving = to_thread([host, port] {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG;
      addrinfo* res = nullptr;
      std::string service = std::to_string(port);
      int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
      if (rc != 0) throw GaiError(rc, "getaddrinfo(" + host + "): " + ::gai_strerror(rc));
      std::vector<BindAddress> out;
      for (auto* p = res; p; p = p->ai_next) out.push_back({p->ai_family, SocketAddress(p->ai_addr, p->ai_addrlen)});
      ::freeaddrinfo(res);
      return out;
    });
    addrs = co_await resolving;
  }
  co_return co_await serve_on(std::move(handler), std::move(addrs), options, {});
}

Task<Server> start_unix_server(ConnectionHandler handler, std::string path, ServerOptions options) {
  sockaddr_un un{};
  if (path.empty() || path.size() >= sizeof un.sun_path)
    detail::raise_invalid_path();
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  // A socket file left by a previous run would make bind fail (asyncio removes it too).
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  std::vector<BindAddress> addrs{{AF_UNIX, SocketAddress(reinterpret_cast<sockaddr*>(&un), len)}};
  co_return co_await serve_on(std::move(handler), std::move(addrs), options, path);
}

}  // namespace awith
