#include "connection.hpp"

#include <algorithm>
#include <limits>

#include "awith/cancel_scope.hpp"
#include "awith/io_errors.hpp"

namespace awith::http::detail {

void ConnectionDeleter::operator()(Connection* c) const noexcept {
  if (auto pool = c->pool.lock()) {
    pool->discard(c);
  } else {
    c->stream.writer.abort();
    delete c;
  }
}

Task<bool> Connection::receive(Deadline deadline, const URL& url) {
  auto& t = transport();
  for (;;) {
    awith::detail::StreamTransport::Recv r;
    try {
      r = t.recv_some();
    } catch (const OSError& e) {
      throw ClientConnectionError(std::string("connection failed: ") + e.what(), url.str());
    }
    if (r == awith::detail::StreamTransport::Recv::data) co_return true;
    if (r == awith::detail::StreamTransport::Recv::eof) co_return false;
    co_await with_deadline(deadline, url, [&t]() -> Task<void> { co_await t.wait_readable(); });
  }
}

Task<void> Connection::send(std::string_view head, std::string_view body, Deadline deadline, const URL& url) {
  auto& w = stream.writer;
  request_left = false;
  if (w.is_closing()) throw ServerDisconnectedError("the connection is closed", url.str());
  const std::uint64_t sent_before = transport().bytes_sent();
  if (body.empty()) {
    w.write(head);
  } else {
    w.writelines({head, body});
  }
  request_left = transport().bytes_sent() != sent_before;
  if (w.write_buffer_size() == 0) co_return;
  bool failed = false;
  std::string what;
  try {
    co_await with_deadline(deadline, url, [&w]() -> Task<void> { co_await w.drain(); });
  } catch (const OSError& e) {
    failed = true;
    what = e.what();
  }
  request_left = transport().bytes_sent() != sent_before;
  if (failed) throw ClientConnectionError("sending the request failed: " + what, url.str());
}

Pool::~Pool() { abort_idle(); }

void Pool::abort_idle() noexcept {
  for (auto& [key, list] : idle_) {
    for (auto& c : list) {
      Connection* raw = c.release();
      raw->stream.writer.abort();
      delete raw;
      --open_;
      --open_per_host_[key];
    }
  }
  idle_.clear();
}

std::size_t Pool::idle() const noexcept {
  std::size_t n = 0;
  for (auto& [key, list] : idle_) n += list.size();
  return n;
}

bool Pool::has_room(const std::string& key) const {
  if (options_.limit != 0 && open_ >= options_.limit) return false;
  if (options_.limit_per_host != 0) {
    auto it = open_per_host_.find(key);
    if (it != open_per_host_.end() && it->second >= options_.limit_per_host) return false;
  }
  return true;
}

void Pool::changed() noexcept {
  if (waiting_ == 0) return;
  changed_.set();
  changed_.clear();
}

void Pool::discard(Connection* c) noexcept {
  c->stream.writer.abort();
  --open_;
  auto it = open_per_host_.find(c->key);
  if (it != open_per_host_.end() && --it->second == 0) open_per_host_.erase(it);
  delete c;
  changed();
}

void Pool::release(ConnectionPtr c) noexcept {
  if (closed_ || c->stream.writer.is_closing()) return;  // the deleter closes it
  c->idle_since = EventLoop::running().time();
  c->reused = true;
  auto& list = idle_[c->key];
  list.push_back(std::move(c));
  changed();
  if (!sweep_armed_) arm_sweep();
}

void Pool::arm_sweep() {
  std::optional<TimePoint> oldest;
  for (auto& [key, list] : idle_)
    if (!list.empty() && (!oldest || list.front()->idle_since < *oldest)) oldest = list.front()->idle_since;
  if (!oldest) return;
  sweep_armed_ = true;
  sweep_timer_ = EventLoop::running().call_at(*oldest + options_.keepalive_timeout, [pool = weak_from_this()] {
    if (auto p = pool.lock()) p->sweep();
  });
}

void Pool::sweep() noexcept {
  sweep_armed_ = false;
  TimePoint now = EventLoop::running().time();
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    // Oldest first: the expired ones are a prefix. Erasing them closes them (the deleter).
    auto fresh = std::find_if(list.begin(), list.end(),
                              [&](const ConnectionPtr& c) { return now - c->idle_since < options_.keepalive_timeout; });
    list.erase(list.begin(), fresh);
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
  if (!closed_) {
    try {
      arm_sweep();
    } catch (...) {
      // Allocation failure re-arming: idle connections still expire when next taken.
    }
  }
}

ConnectionPtr Pool::take_idle(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  TimePoint now = EventLoop::running().time();
  while (!list.empty()) {
    ConnectionPtr c = std::move(list.back());
    list.pop_back();
    if (now - c->idle_since > options_.keepalive_timeout) continue;  // too old: closed by the deleter
    // An idle connection has nothing to say: data or EOF means the server closed or broke it.
    bool usable = c->input().empty();
    if (usable) {
      try {
        usable = c->transport().recv_some() == awith::detail::StreamTransport::Recv::again;
      } catch (const OSError&) {
        usable = false;
      }
    }
    if (usable) {
      if (list.empty()) idle_.erase(it);
      return c;
    }
    ++statistics_.dropped_idle;
  }
  idle_.erase(it);
  return nullptr;
}

bool Pool::evict_oldest_idle() {
  std::vector<ConnectionPtr>* oldest = nullptr;
  for (auto& [key, list] : idle_)
    if (!list.empty() && (!oldest || list.front()->idle_since < oldest->front()->idle_since)) oldest = &list;
  if (!oldest) return false;
  std::string key = oldest->front()->key;
  oldest->erase(oldest->begin());  // the deleter closes it and frees the slot
  if (auto it = idle_.find(key); it != idle_.end() && it->second.empty()) idle_.erase(it);
  return true;
}

const SSLContext& Pool::tls_context() {
  if (!tls_) {
    const TlsOptions& o = options_.tls;
    SSLContext ctx(SSLContext::Side::client);
    if (o.dangerously_disable_certificate_verification) {
      ctx.dangerously_disable_verification();
    } else {
      if (o.use_system_ca) ctx.load_default_certs();
      if (!o.ca_file.empty()) ctx.load_verify_locations(o.ca_file);
    }
    ctx.set_alpn_protocols({"http/1.1"});
    tls_.emplace(std::move(ctx));
  }
  return *tls_;
}

namespace {
// A pool slot taken before connecting; given back unless the connection was made.
struct Reservation {
  std::size_t* open;
  std::size_t* per_host;
  bool kept = false;
  ~Reservation() {
    if (kept) return;
    --*open;
    --*per_host;
  }
};
}  // namespace

Task<ConnectionPtr> Pool::acquire(const URL& url, Deadline connect, std::optional<Duration> sock_connect, bool fresh) {
  std::string key = url.origin();
  for (;;) {
    if (closed_) throw ClientConnectionError("the session is closed", url.str());
    if (!fresh) {
      if (auto c = take_idle(key)) co_return c;
    }
    if (has_room(key)) break;
    if (options_.limit != 0 && open_ >= options_.limit && evict_oldest_idle()) continue;
    ++waiting_;
    struct Unwait {
      std::size_t& n;
      ~Unwait() { --n; }
    } unwait{waiting_};
    co_await with_deadline(connect, url, [this]() -> Task<void> { co_await changed_.wait(); });
  }
  ++open_;
  std::size_t& per_host = open_per_host_[key];
  ++per_host;
  Reservation reservation{&open_, &per_host};
  Deadline deadline = earliest(connect, after(sock_connect, TimeoutPhase::sock_connect));
  std::string host = url.host();
  std::uint16_t port = url.port();
  std::optional<StreamPair> stream;
  std::string failure;
  bool tls_failure = false;
  int err = 0;
  try {
    StreamOptions stream_options;
    // The TLS handshake is part of connecting: the sock_connect / connect deadline bounds it.
    if (url.is_https()) {
      stream_options.ssl = tls_context();
      stream_options.server_hostname = host;
    }
    stream.emplace(
        co_await with_deadline(deadline, url, [&]() { return open_connection(host, port, stream_options); }));
  } catch (const SSLCertVerificationError& e) {
    tls_failure = true;
    failure = std::string("certificate verification failed for ") + url.host_header() + ": " + e.what();
  } catch (const SSLError& e) {
    tls_failure = true;
    failure = std::string("TLS handshake with ") + url.host_header() + " failed: " + e.what();
  } catch (const GaiError& e) {
    failure = std::string("cannot resolve host ") + host + ": " + e.what();
  } catch (const OSError& e) {
    failure = std::string("cannot connect to host ") + url.host_header() + ": " + e.what();
    err = e.errno_value();
  }
  if (!stream) {
    changed();
    if (tls_failure) throw ClientSSLError(failure, url.str());
    throw ClientConnectorError(failure, url.str(), err);
  }
  reservation.kept = true;
  ++statistics_.connections_opened;
  co_return ConnectionPtr(new Connection(weak_from_this(), key, std::move(*stream), limits_));
}

Task<void> Pool::close(Duration bound) {
  closed_ = true;
  sweep_timer_.cancel();
  sweep_armed_ = false;
  std::vector<ConnectionPtr> closing;
  for (auto& [key, list] : idle_)
    for (auto& c : list) closing.push_back(std::move(c));
  idle_.clear();
  changed();
  for (auto& c : closing) c->stream.writer.close();
  co_await async_with(CancelScope::shielded(bound), [&closing]() -> Task<void> {
    for (auto& c : closing) {
      try {
        co_await c->stream.writer.wait_closed();
      } catch (const std::exception&) {
        // A connection that failed while closing is closed all the same.
      }
    }
  });
  closing.clear();
}

}  // namespace awith::http::detail
