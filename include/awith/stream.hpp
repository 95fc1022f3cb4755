// Streams (asyncio's StreamReader / StreamWriter) over a non-blocking stream socket, and
// open_connection / open_unix_connection.
// snippet: tests/snippets/headers.cpp#open_connection
//
//   auto [reader, writer] = co_await awith::open_connection("example.org", 80);
//   writer.write("GET / HTTP/1.0\r\n\r\n");
//   co_await writer.drain();
//   std::string status = co_await reader.readline();
//   writer.close();
//   co_await writer.wait_closed();
//
// A reader and its writer share one connection (the transport). Both are cheap handles (copies
// share the connection); the connection lives while a handle does, and while a close() is still
// flushing. Reading is pull-based: a read tries recv() first and waits for readiness only after
// EAGAIN, so the receive buffer never holds more than `limit` plus one read chunk. Writing tries
// send() at once and buffers only what the kernel did not take; the loop flushes the rest when the
// socket becomes writable, whether or not anyone awaits drain().
//
// Errors: asyncio's names. IncompleteReadError and LimitOverrunError as in asyncio; a connection
// that fails (reset, broken pipe) raises the ConnectionError subclass (io_errors.hpp) from every
// later read, drain and wait_closed. A stream must be used from its loop's thread, and one task at
// a time may wait to read (a second concurrent reader raises RuntimeError, as in asyncio).
#pragma once

#include <any>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "awith/io_errors.hpp"
#include "awith/loop.hpp"
#include "awith/runtime.hpp"
#include "awith/socket_address.hpp"
#include "awith/task.hpp"
#include "awith/tls.hpp"

namespace awith {

// The buffer limit of readline/readuntil (asyncio's _DEFAULT_LIMIT).
inline constexpr std::size_t kDefaultStreamLimit = 64 * 1024;

// readexactly (or readuntil) reached EOF first; partial() holds every byte that was read, so nothing
// is lost. expected() is the requested size (readexactly) or empty (readuntil).
class IncompleteReadError : public std::runtime_error {
 public:
  IncompleteReadError(std::string partial, std::optional<std::size_t> expected);
  const std::string& partial() const noexcept { return partial_; }
  std::optional<std::size_t> expected() const noexcept { return expected_; }

 private:
  std::string partial_;
  std::optional<std::size_t> expected_;
};

// readuntil found no separator within `limit` bytes (or found it beyond the limit). The data stays
// in the buffer; consumed() says how much of it was examined (asyncio's `consumed`).
class LimitOverrunError : public std::runtime_error {
 public:
  LimitOverrunError(const std::string& message, std::size_t consumed)
      : std::runtime_error(message), consumed_(consumed) {}
  std::size_t consumed() const noexcept { return consumed_; }

 private:
  std::size_t consumed_;
};

// Set the fields by name (StreamOptions o; o.ssl = ctx;). It has a constructor, so no aggregate
// initialisation: g++ 12 destroys an aggregate temporary of a co_await expression twice when the
// await throws, and `co_await open_connection(host, port)` makes one from the default argument.
struct StreamOptions {
  StreamOptions() = default;
  // readline/readuntil buffer limit; 0, or a negative number converted to std::size_t, makes
  // creating the stream throw std::invalid_argument (asyncio's ValueError), as do negative water marks.
  std::size_t limit = kDefaultStreamLimit;
  // drain() waits while more than write_high_water bytes are buffered, until at most
  // write_low_water remain (asyncio's transport defaults: 64 KiB and 16 KiB).
  std::size_t write_high_water = 64 * 1024;
  std::size_t write_low_water = 16 * 1024;
  // open_connection / open_unix_connection only (make_stream ignores the rest; see start_tls):
  // a client context makes the connection TLS; the handshake must finish within
  // ssl_handshake_timeout (TimeoutError), and a closing TLS connection that has not flushed its
  // data and close_notify within ssl_shutdown_timeout is aborted (asyncio's defaults: 60 s, 30 s).
  std::optional<SSLContext> ssl;
  // The name sent as SNI and checked against the server's certificate; "" = the host connected to.
  std::string server_hostname;
  Duration ssl_handshake_timeout = std::chrono::seconds(60);
  Duration ssl_shutdown_timeout = std::chrono::seconds(30);
  // Bound on connecting: every attempt at every address within it (TimeoutError); name resolution
  // and the TLS handshake are not included. nullopt: no bound but the kernel's.
  std::optional<Duration> connect_timeout;
  // Happy Eyeballs (RFC 8305): while an attempt is pending, the next address is tried after this
  // delay (or at once when an attempt fails); the first connection wins and the other attempts are
  // cancelled (asyncio's happy_eyeballs_delay; 250 ms is RFC 8305's recommendation). nullopt: one
  // address at a time, each attempt waited out before the next.
  std::optional<Duration> happy_eyeballs_delay = std::chrono::milliseconds(250);
  // The addresses are reordered by family before connecting: this many of the first family, then
  // one of each family in turn (asyncio's interleave; 0 keeps the resolver's order). See
  // interleave_by_family in dns.hpp.
  std::size_t interleave = 1;
};

namespace detail {

// A contiguous byte buffer with a consumed prefix; grows geometrically, compacts before growing.
class ByteBuffer {
 public:
  std::size_t size() const noexcept { return end_ - begin_; }
  bool empty() const noexcept { return end_ == begin_; }
  const char* data() const noexcept { return buf_.get() + begin_; }
  std::string_view view() const noexcept { return {data(), size()}; }
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() noexcept { begin_ = end_ = 0; }
  // Writable space of at least `n` bytes at the end (commit what was filled).
  std::span<char> prepare(std::size_t n);
  void commit(std::size_t n) noexcept { end_ += n; }
  void append(const char* p, std::size_t n);
  std::string take(std::size_t n) {
    std::string out(data(), n);
    consume(n);
    return out;
  }

 private:
  std::unique_ptr<char[]> buf_;
  std::size_t begin_ = 0, end_ = 0, cap_ = 0;
};

// Waiting tasks of one condition of a connection or server (readable, drained, closed...).
// Follows the suspension contract of runtime.hpp: a node leaves the list when it is woken,
// detached by a cancellation, or destroyed.
class IoWaitList;
struct IoListWait : WaitSlot {
  IoWaitList* list;
  IoListWait* next = nullptr;
  IoListWait* prev = nullptr;
  bool linked = false;
  explicit IoListWait(IoWaitList& l) noexcept : list(&l) { Waiter::detach = &on_detach; }
  IoListWait(const IoListWait&) = delete;
  ~IoListWait();
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h);
  void await_resume();
  static bool on_detach(Waiter* w) noexcept;
};
class IoWaitList {
 public:
  IoWaitList() = default;
  IoWaitList(const IoWaitList&) = delete;
  IoWaitList& operator=(const IoWaitList&) = delete;
  ~IoWaitList() { wake_all(); }
  IoListWait wait() noexcept { return IoListWait(*this); }
  bool empty() const noexcept { return head_ == nullptr; }
  void wake_all() noexcept;

 private:
  friend struct IoListWait;
  void link(IoListWait* w) noexcept;
  void unlink(IoListWait* w) noexcept;
  IoListWait* head_ = nullptr;
  IoListWait* tail_ = nullptr;
};

// The connection a reader and a writer share: the socket, its loop registration, both buffers.
class StreamTransport : public std::enable_shared_from_this<StreamTransport> {
 public:
  // Adopts `fd` (a connected, non-blocking stream socket) and registers it with the running loop.
  StreamTransport(int fd, const StreamOptions& options);
  ~StreamTransport();
  StreamTransport(const StreamTransport&) = delete;
  StreamTransport& operator=(const StreamTransport&) = delete;

  enum class Recv { data, eof, again };
  // One receive into the read buffer (or into `into` when given): no waiting. Throws the
  // connection's error once it has failed.
  Recv recv_some(std::span<char> into, std::size_t& got);
  Recv recv_some() {
    std::size_t got = 0;
    return recv_some({}, got);
  }
  IoListWait wait_readable() noexcept;

  void write(const char* p, std::size_t n);
  void writev(const std::string_view* parts, std::size_t count);
  Task<void> drain();
  void write_eof();
  bool can_write_eof() const noexcept { return !tls_; }
  void close() noexcept;
  void abort() noexcept;
  bool is_closing() const noexcept { return closing_ || fd_ < 0; }
  Task<void> wait_closed();
  std::size_t write_buffer_size() const noexcept { return wbuf_.size(); }
  // Bytes the kernel accepted on this socket so far (TLS records included): whether anything of a
  // message left, which decides if a failed request may be sent again.
  std::uint64_t bytes_sent() const noexcept { return bytes_sent_; }

  ByteBuffer& read_buffer() noexcept { return rbuf_; }
  bool read_eof() const noexcept { return read_eof_ || fd_ < 0; }
  std::exception_ptr error() const noexcept { return error_; }
  const StreamOptions& options() const noexcept { return options_; }
  int fd() const noexcept { return fd_; }
  const SocketAddress& peername() const noexcept { return peer_; }
  const SocketAddress& sockname() const noexcept { return local_; }

  // Upgrades the connection to TLS (the context's side decides client or server) once everything
  // written so far is flushed; raises SSLError / SSLCertVerificationError, TimeoutError after
  // handshake_timeout, ConnectionResetError when the peer leaves, and aborts the connection then.
  Task<void> start_tls(SSLContext context, std::string server_hostname, Duration handshake_timeout,
                       Duration shutdown_timeout);
  const std::shared_ptr<TlsSession>& tls() const noexcept { return tls_; }

 private:
  struct Watch : IoWatch {
    StreamTransport* owner = nullptr;
  };
  static void on_event(IoWatch* w);
  void flush() noexcept;
  void fail(int err, const char* what) noexcept;
  void finish_close(std::exception_ptr err) noexcept;
  bool try_send(const char*& p, std::size_t& n) noexcept;
  void fail_with(std::exception_ptr error) noexcept;
  void note_short_read() noexcept;
  Recv recv_socket(char* data, std::size_t size, std::size_t& got);
  // TLS: plaintext in and out of the session, ciphertext through the socket.
  Recv recv_tls(std::span<char> into, std::size_t& got);
  Recv receive_ciphertext();
  void send_tls_output();
  bool tls_handshake_step();
  Task<void> tls_handshake();
  void write_tls(const char* p, std::size_t n);

  Watch watch_;
  EventLoop* loop_;
  int fd_;
  StreamOptions options_;
  ByteBuffer rbuf_;
  ByteBuffer wbuf_;
  std::uint64_t bytes_sent_ = 0;
  IoWaitList readers_;
  IoWaitList drainers_;
  IoWaitList closed_waiters_;
  std::exception_ptr error_;
  SocketAddress peer_;
  SocketAddress local_;
  std::shared_ptr<StreamTransport> keep_alive_;  // set while a close() still flushes
  std::shared_ptr<TlsSession> tls_;
  IoWaitList flushed_;  // start_tls waits for an empty write buffer
  Handle close_timer_;  // bounds a TLS close (ssl_shutdown_timeout)
  Duration tls_shutdown_timeout_{};
  bool read_eof_ = false;
  bool write_paused_ = false;
  bool closing_ = false;
  bool eof_pending_ = false;
  bool eof_written_ = false;
};

}  // namespace detail

// asyncio.StreamReader over a connection.
class StreamReader {
 public:
  StreamReader() = default;
  explicit StreamReader(std::shared_ptr<detail::StreamTransport> t) noexcept : t_(std::move(t)) {}

  // Up to n bytes (n < 0: everything until EOF). Waits only when nothing is buffered; "" at EOF.
  Task<std::string> read(std::ptrdiff_t n = -1);
  // Up to buf.size() bytes into buf, without allocating (the hot path of servers); 0 at EOF.
  Task<std::size_t> read_into(std::span<char> buf);
  // One line including "\n"; at EOF the rest without "\n", then "". A line longer than the limit
  // raises LimitOverrunError after discarding it (asyncio raises ValueError here).
  Task<std::string> readline();
  // Data up to and including `separator`; IncompleteReadError at EOF (partial data inside);
  // LimitOverrunError when the separator is not within the limit (the data stays buffered).
  Task<std::string> readuntil(std::string separator = "\n");
  // Exactly n bytes, or IncompleteReadError with what arrived before EOF. A negative n raises
  // std::invalid_argument (asyncio's ValueError), rather than asking for SIZE_MAX bytes.
  Task<std::string> readexactly(std::ptrdiff_t n);
  // EOF was received and everything buffered was read.
  bool at_eof() const noexcept { return t_->read_eof() && t_->read_buffer().empty(); }
  // The exception that ended the connection, if any (asyncio's StreamReader.exception()).
  std::exception_ptr exception() const noexcept { return t_->error(); }
  std::size_t limit() const noexcept { return t_->options().limit; }
  // Bytes received and not read yet.
  std::string_view buffered() const noexcept { return t_->read_buffer().view(); }
  const std::shared_ptr<detail::StreamTransport>& transport() const noexcept { return t_; }

 private:
  std::shared_ptr<detail::StreamTransport> t_;
};

// asyncio.StreamWriter over a connection.
class StreamWriter {
 public:
  StreamWriter() = default;
  explicit StreamWriter(std::shared_ptr<detail::StreamTransport> t) noexcept : t_(std::move(t)) {}

  // Sends at once what the socket takes and buffers the rest (never blocks). After close() the
  // data is dropped silently, as in asyncio.
  void write(std::string_view data) { t_->write(data.data(), data.size()); }
  // One writev() over all parts; only the unsent remainder is copied.
  void writelines(std::span<const std::string_view> parts) { t_->writev(parts.data(), parts.size()); }
  void writelines(std::initializer_list<std::string_view> parts) { t_->writev(parts.begin(), parts.size()); }
  // Waits while the write buffer is above the high-water mark; raises the connection's error, or
  // ConnectionResetError once the connection is closed.
  Task<void> drain() { return t_->drain(); }
  // Half-close: shuts down the sending side once the buffer is flushed; reading goes on.
  void write_eof() { t_->write_eof(); }
  // false on TLS connections (TLS has no half-close; write_eof raises RuntimeError there).
  bool can_write_eof() const noexcept { return t_->can_write_eof(); }
  // Starts closing: flushes what was written, then closes the socket. is_closing() is true at once.
  void close() noexcept { t_->close(); }
  // Closes at once, discarding unsent data (asyncio's transport.abort()).
  void abort() noexcept { t_->abort(); }
  bool is_closing() const noexcept { return t_->is_closing(); }
  // Waits until the socket is closed; raises the error that ended the connection, if one did.
  Task<void> wait_closed() { return t_->wait_closed(); }
  // asyncio 3.11's StreamWriter.start_tls: upgrades this connection to TLS in place (STARTTLS).
  // Data written before is flushed first; data already buffered by the reader stays plaintext.
  // A client context checks server_hostname (required unless verification is off); a server
  // context makes this side the TLS server. The reader and writer handles go on working.
  Task<void> start_tls(SSLContext context, std::string server_hostname = {},
                       Duration handshake_timeout = std::chrono::seconds(60),
                       Duration shutdown_timeout = std::chrono::seconds(30)) {
    return t_->start_tls(std::move(context), std::move(server_hostname), handshake_timeout, shutdown_timeout);
  }
  // "peername" / "sockname" -> SocketAddress, "socket" -> int (the fd, -1 once closed),
  // "ssl_object" -> SSLObject on a TLS connection; an empty std::any for other names.
  std::any get_extra_info(std::string_view name) const;
  const SocketAddress& peername() const noexcept { return t_->peername(); }
  const SocketAddress& sockname() const noexcept { return t_->sockname(); }
  std::size_t write_buffer_size() const noexcept { return t_->write_buffer_size(); }
  const std::shared_ptr<detail::StreamTransport>& transport() const noexcept { return t_; }

 private:
  std::shared_ptr<detail::StreamTransport> t_;
};

// The two ends asyncio.open_connection returns; `auto [reader, writer] = co_await ...` works.
struct StreamPair {
  StreamReader reader;
  StreamWriter writer;
};

// Wraps a connected socket (adopted; made non-blocking) into a reader/writer pair.
StreamPair make_stream(int fd, const StreamOptions& options = {});

// Resolves host with awith::resolve (dns.hpp: getaddrinfo on the default executor unless host is
// a numeric address), then races connection attempts over the addresses as `happy_eyeballs_delay`
// and `interleave` say, within `connect_timeout`. The first to connect wins; every other attempt
// is cancelled and its socket closed. When every attempt fails, the error of a single attempt is
// raised as it is, and the errors of several as one OSError whose message lists each attempt's
// error, of the subclass of their errno when they share one (ConnectionRefusedError when every
// address refused), else with errno 0. Cancelling leaves no socket open. TCP_NODELAY is set, as
// asyncio does. With `ssl`, the handshake checks server_hostname, or else host.
Task<StreamPair> open_connection(std::string host, std::uint16_t port, StreamOptions options = {});
// The same over addresses resolved already (in the order resolve() would give them; `interleave`
// still applies). With `ssl`, server_hostname names the server, or else the address connected to.
Task<StreamPair> open_connection(std::vector<SocketAddress> addresses, StreamOptions options = {});
// The same over a Unix-domain stream socket at `path`.
Task<StreamPair> open_unix_connection(std::string path, StreamOptions options = {});

}  // namespace awith
