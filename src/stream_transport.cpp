// The transport under a StreamReader/StreamWriter pair: the socket (and its TLS session), the read
// buffer, writes with backpressure, and closing.
#include "awith/stream.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "awith/io_wait.hpp"
#include "awith/tasks.hpp"
#include "awith/timeout.hpp"
#include "stream_options.hpp"
#include "tls_session.hpp"

namespace awith {

// The throws of the coroutines below go through these functions: g++ 12 destroys a temporary
// std::string of a throw expression inside a coroutine twice.
namespace {
[[noreturn]] void raise_connection_lost() { throw ConnectionResetError("Connection lost"); }
[[noreturn]] void raise_handshake_lost() { throw ConnectionResetError("Connection lost during the TLS handshake"); }
[[noreturn]] void raise_runtime(const char* what) { throw RuntimeError(what); }
}  // namespace

namespace detail {

// --- ByteBuffer --------------------------------------------------------------------------------

std::span<char> ByteBuffer::prepare(std::size_t n) {
  if (cap_ - end_ < n) {
    std::size_t used = size();
    if (begin_ > 0 && cap_ - used >= n) {
      std::memmove(buf_.get(), buf_.get() + begin_, used);
    } else {
      std::size_t cap = std::max(cap_ * 2, used + n);
      auto fresh = std::make_unique<char[]>(cap);
      if (used) std::memcpy(fresh.get(), buf_.get() + begin_, used);
      buf_ = std::move(fresh);
      cap_ = cap;
    }
    begin_ = 0;
    end_ = used;
  }
  return {buf_.get() + end_, cap_ - end_};
}

void ByteBuffer::append(const char* p, std::size_t n) {
  if (n == 0) return;
  auto space = prepare(n);
  std::memcpy(space.data(), p, n);
  commit(n);
}

// --- IoWaitList ----------------------------------------------------------------------------------

IoListWait::~IoListWait() {
  if (linked) list->unlink(this);
}

bool IoListWait::await_suspend(std::coroutine_handle<> h) {
  if (!begin(h)) return false;
  list->link(this);
  ++task->loop().pending_io_waits;
  return true;
}

void IoListWait::await_resume() {
  if (linked) list->unlink(this);
  end();
}

bool IoListWait::on_detach(Waiter* w) noexcept {
  auto* self = static_cast<IoListWait*>(w);
  if (self->linked) self->list->unlink(self);
  return true;
}

void IoWaitList::link(IoListWait* w) noexcept {
  w->prev = tail_;
  w->next = nullptr;
  (tail_ ? tail_->next : head_) = w;
  tail_ = w;
  w->linked = true;
}

void IoWaitList::unlink(IoListWait* w) noexcept {
  (w->prev ? w->prev->next : head_) = w->next;
  (w->next ? w->next->prev : tail_) = w->prev;
  w->next = w->prev = nullptr;
  w->linked = false;
  --w->task->loop().pending_io_waits;
}

void IoWaitList::wake_all() noexcept {
  while (head_) {
    IoListWait* w = head_;
    unlink(w);
    w->wake();
  }
}

// --- StreamTransport ---------------------------------------------------------------------------

StreamTransport::StreamTransport(int fd, const StreamOptions& options)
    : loop_(&EventLoop::running()), fd_(fd), options_(options) {
  if (const char* bad = invalid_sizes(options_)) {
    ::close(fd);
    fd_ = -1;
    throw std::invalid_argument(bad);
  }
  if (options_.write_low_water > options_.write_high_water) options_.write_low_water = options_.write_high_water;
  peer_ = SocketAddress::peer_of(fd);
  local_ = SocketAddress::local_of(fd);
  watch_.fd = fd;
  watch_.owner = this;
  watch_.on_event = &on_event;
  try {
    loop_->add_watch(&watch_);
  } catch (...) {
    ::close(fd);
    fd_ = -1;
    throw;
  }
  // Try the syscalls first: data may already be waiting, and a fresh socket has send space.
  watch_.readable = watch_.writable = true;
}

StreamTransport::~StreamTransport() {
  close_timer_.cancel();
  if (fd_ >= 0) {
    loop_->remove_watch(&watch_);
    ::close(fd_);
  }
}

void StreamTransport::on_event(IoWatch* w) {
  auto* self = static_cast<Watch*>(w)->owner;
  auto guard = self->keep_alive_;  // a flush may finish a close() and drop the last reference
  if (w->writable && !self->wbuf_.empty()) self->flush();
  if (self->fd_ >= 0 && (w->readable || w->hangup)) self->readers_.wake_all();
}

StreamTransport::Recv StreamTransport::recv_some(std::span<char> into, std::size_t& got) {
  got = 0;
  if (error_) std::rethrow_exception(error_);
  if (read_eof()) return Recv::eof;
  if (tls_) return recv_tls(into, got);
  if (!watch_.readable) return Recv::again;  // before prepare(): a waiting reader grows nothing
  std::span<char> dest = into.empty() ? rbuf_.prepare(16 * 1024) : into;
  Recv r = recv_socket(dest.data(), dest.size(), got);
  if (r == Recv::data && into.empty()) rbuf_.commit(got);
  return r;
}

// One recv() from the socket (plaintext, or ciphertext for the TLS session), keeping the
// readiness, short-read and EOF state; a socket error fails the stream and is thrown.
StreamTransport::Recv StreamTransport::recv_socket(char* data, std::size_t size, std::size_t& got) {
  got = 0;
  if (!watch_.readable) return Recv::again;
  for (;;) {
    ssize_t n = ::recv(fd_, data, size, 0);
    if (n > 0) {
      got = static_cast<std::size_t>(n);
      if (got < size) note_short_read();
      return Recv::data;
    }
    if (n == 0) {
      read_eof_ = true;
      return Recv::eof;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      watch_.readable = false;
      return Recv::again;
    }
    int err = errno;
    fail(err, "recv");
    std::rethrow_exception(error_);
  }
}

IoListWait StreamTransport::wait_readable() noexcept { return readers_.wait(); }

// A stream socket's recv() returns less than asked only when it emptied the receive queue, so the
// next recv() would return EAGAIN: skip it and wait for the next edge (half of all recv() calls of
// an echo server otherwise). Unless the peer's FIN was already reported: then the next recv()
// returns 0 (EOF) and no new edge would announce it.
void StreamTransport::note_short_read() noexcept {
  if (!watch_.peer_closed && !watch_.hangup) watch_.readable = false;
}

// --- TLS -----------------------------------------------------------------------------------------

StreamTransport::Recv StreamTransport::recv_tls(std::span<char> into, std::size_t& got) {
  for (;;) {
    std::span<char> dest = into.empty() ? rbuf_.prepare(16 * 1024) : into;
    TlsSession::Status status;
    try {
      status = tls_->read(dest.data(), dest.size(), got);
    } catch (...) {
      auto error = std::current_exception();
      send_tls_output();  // the alert that tells the peer why
      fail_with(error);
      throw;
    }
    send_tls_output();  // reading may answer the peer (key updates)
    if (status == TlsSession::Status::ok) {
      if (into.empty()) rbuf_.commit(got);
      return Recv::data;
    }
    if (status == TlsSession::Status::closed) {
      read_eof_ = true;
      return Recv::eof;
    }
    Recv r = receive_ciphertext();
    if (r != Recv::data) return r;
  }
}

// One recv() of ciphertext into the session. A peer that closes without close_notify ends the
// stream as EOF, as asyncio does (peer_sent_close_notify() tells the two apart).
StreamTransport::Recv StreamTransport::receive_ciphertext() {
  char buf[16 * 1024];
  std::size_t got = 0;
  Recv r = recv_socket(buf, sizeof buf, got);
  if (r == Recv::data) tls_->feed(buf, got);
  return r;
}

// Moves the session's ciphertext to the socket: sent at once when nothing is queued, the rest
// buffered and flushed by the loop like plain data.
void StreamTransport::send_tls_output() {
  std::string_view out = tls_->output();
  if (out.empty()) return;
  if (fd_ < 0) {
    tls_->clear_output();
    return;
  }
  const char* p = out.data();
  std::size_t n = out.size();
  if (!wbuf_.empty() || try_send(p, n)) wbuf_.append(p, n);
  tls_->clear_output();
  if (wbuf_.size() > options_.write_high_water) write_paused_ = true;
}

bool StreamTransport::tls_handshake_step() {
  for (;;) {
    if (error_) std::rethrow_exception(error_);
    if (fd_ < 0) raise_handshake_lost();
    TlsSession::Status status;
    try {
      status = tls_->handshake();
    } catch (...) {
      send_tls_output();  // the alert (unknown CA, bad certificate...) reaches the peer
      throw;
    }
    send_tls_output();
    if (status == TlsSession::Status::ok) return true;
    Recv r = receive_ciphertext();
    if (r == Recv::eof) raise_handshake_lost();
    if (r == Recv::again) return false;
  }
}

Task<void> StreamTransport::tls_handshake() {
  while (!tls_handshake_step()) co_await readers_.wait();
}

Task<void> StreamTransport::start_tls(SSLContext context, std::string server_hostname, Duration handshake_timeout,
                                      Duration shutdown_timeout) {
  auto self = shared_from_this();
  if (tls_) raise_runtime("start_tls(): the connection already uses TLS");
  for (;;) {
    if (error_) std::rethrow_exception(error_);
    if (fd_ < 0 || closing_) raise_connection_lost();
    if (wbuf_.empty()) break;
    co_await flushed_.wait();
  }
  tls_ = std::make_shared<TlsSession>(context, server_hostname);
  tls_shutdown_timeout_ = shutdown_timeout;
  std::exception_ptr failure;
  try {
    co_await async_with(timeout(handshake_timeout), [this]() -> Task<void> { co_await tls_handshake(); });
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    abort();
    std::rethrow_exception(failure);
  }
}

bool StreamTransport::try_send(const char*& p, std::size_t& n) noexcept {
  while (n > 0) {
    ssize_t sent = ::send(fd_, p, n, MSG_NOSIGNAL);
    if (sent >= 0) {
      bytes_sent_ += static_cast<std::uint64_t>(sent);
      p += sent;
      n -= static_cast<std::size_t>(sent);
      if (n > 0) watch_.writable = false;  // a short send means the socket buffer is full
      if (n > 0) return true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      watch_.writable = false;
      return true;
    }
    fail(errno, "send");
    return false;
  }
  return true;
}

void StreamTransport::write(const char* p, std::size_t n) {
  if (is_closing() || n == 0) return;
  if (eof_pending_ || eof_written_) throw RuntimeError("write() after write_eof()");
  if (tls_) {
    write_tls(p, n);
    return;
  }
  if (wbuf_.empty() && !try_send(p, n)) return;
  wbuf_.append(p, n);
  if (wbuf_.size() > options_.write_high_water) write_paused_ = true;
}

void StreamTransport::write_tls(const char* p, std::size_t n) {
  if (!tls_->handshake_done()) throw RuntimeError("write() during the TLS handshake");
  try {
    tls_->write(p, n);
  } catch (const SSLError&) {
    fail_with(std::current_exception());
    return;
  }
  send_tls_output();
}

void StreamTransport::writev(const std::string_view* parts, std::size_t count) {
  if (is_closing()) return;
  if (eof_pending_ || eof_written_) throw RuntimeError("writelines() after write_eof()");
  if (tls_) {
    for (std::size_t i = 0; i < count && !is_closing(); ++i) write_tls(parts[i].data(), parts[i].size());
    return;
  }
  std::size_t i = 0;
  if (wbuf_.empty()) {
    constexpr std::size_t kBatch = 64;
    iovec iov[kBatch];
    while (i < count) {
      std::size_t k = 0, total = 0;
      for (std::size_t j = i; j < count && k < kBatch; ++j) {
        if (parts[j].empty()) continue;
        iov[k].iov_base = const_cast<char*>(parts[j].data());
        iov[k].iov_len = parts[j].size();
        total += parts[j].size();
        ++k;
      }
      if (k == 0) return;
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = k;
      ssize_t sent = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          fail(errno, "sendmsg");
          return;
        }
        watch_.writable = false;
        break;
      }
      bytes_sent_ += static_cast<std::uint64_t>(sent);
      // Skip what was sent: whole parts, then the sent prefix of the first unsent one.
      auto left = static_cast<std::size_t>(sent);
      while (i < count && left >= parts[i].size()) left -= parts[i++].size();
      if (i < count && left > 0) {
        wbuf_.append(parts[i].data() + left, parts[i].size() - left);
        ++i;
      }
      if (static_cast<std::size_t>(sent) < total) {
        watch_.writable = false;
        break;
      }
    }
  }
  for (; i < count; ++i) wbuf_.append(parts[i].data(), parts[i].size());
  if (wbuf_.size() > options_.write_high_water) write_paused_ = true;
}

void StreamTransport::flush() noexcept {
  const char* p = wbuf_.data();
  std::size_t n = wbuf_.size();
  std::size_t before = n;
  if (!try_send(p, n)) return;  // failed: the connection is closed
  wbuf_.consume(before - n);
  if (write_paused_ && wbuf_.size() <= options_.write_low_water) {
    write_paused_ = false;
    drainers_.wake_all();
  }
  if (!wbuf_.empty()) return;
  flushed_.wake_all();
  if (eof_pending_) {
    eof_pending_ = false;
    eof_written_ = true;
    ::shutdown(fd_, SHUT_WR);
  }
  if (closing_) finish_close(nullptr);
}

Task<void> StreamTransport::drain() {
  co_await checkpoint();  // a drain that need not wait is still a cancellation point
  for (;;) {
    if (error_) std::rethrow_exception(error_);
    if (fd_ < 0) raise_connection_lost();
    if (!write_paused_) co_return;
    auto self = shared_from_this();
    co_await drainers_.wait();
  }
}

void StreamTransport::write_eof() {
  if (tls_) throw RuntimeError("write_eof(): TLS connections cannot half-close");
  if (is_closing() || eof_pending_ || eof_written_) return;
  if (!wbuf_.empty()) {
    eof_pending_ = true;
    return;
  }
  eof_written_ = true;
  ::shutdown(fd_, SHUT_WR);
}

void StreamTransport::close() noexcept {
  if (is_closing()) return;
  closing_ = true;
  if (tls_) {
    tls_->shutdown();  // close_notify goes out after the data written before
    try {
      send_tls_output();
    } catch (const std::exception&) {
      abort();  // no memory to queue close_notify: close without it
      return;
    }
    if (fd_ < 0) return;
  }
  if (wbuf_.empty()) {
    finish_close(nullptr);
    return;
  }
  keep_alive_ = shared_from_this();  // flushing goes on even if every handle is dropped
  if (tls_) {
    // asyncio's ssl_shutdown_timeout: a peer that stops reading cannot keep the connection open.
    try {
      close_timer_ = loop_->call_later(tls_shutdown_timeout_, [this] { abort(); });
    } catch (const std::exception&) {
      abort();
    }
  }
}

void StreamTransport::abort() noexcept {
  closing_ = true;
  wbuf_.clear();
  finish_close(nullptr);
}

void StreamTransport::fail(int err, const char* what) noexcept {
  std::exception_ptr error;
  try {
    error = make_os_error(err, what);
  } catch (...) {
    error = std::current_exception();
  }
  fail_with(error);
}

void StreamTransport::fail_with(std::exception_ptr error) noexcept {
  if (!error_) error_ = std::move(error);
  closing_ = true;
  wbuf_.clear();
  finish_close(error_);
}

void StreamTransport::finish_close(std::exception_ptr err) noexcept {
  auto self = std::move(keep_alive_);  // released when this function returns
  if (fd_ < 0) return;
  if (err && !error_) error_ = err;
  close_timer_.cancel();
  loop_->remove_watch(&watch_);
  ::close(fd_);
  fd_ = -1;
  wbuf_.clear();
  write_paused_ = false;
  readers_.wake_all();
  drainers_.wake_all();
  closed_waiters_.wake_all();
}

Task<void> StreamTransport::wait_closed() {
  auto self = shared_from_this();
  while (fd_ >= 0) co_await closed_waiters_.wait();
  if (error_) std::rethrow_exception(error_);
}

}  // namespace detail

}  // namespace awith
