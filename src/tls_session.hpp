// The TLS engine of one connection (private to the io layer): an OpenSSL SSL object over two
// memory BIOs. The stream feeds it the ciphertext it received and sends the ciphertext it
// produced, so OpenSSL never touches the socket and never blocks.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "awith/tls.hpp"

namespace awith::detail {

struct SSLContextState {
  SSL_CTX* ctx = nullptr;
  SSLContext::Side side = SSLContext::Side::client;
  bool check_hostname = false;
  std::string alpn_wire;  // ALPN list in wire format (length-prefixed names)
  ~SSLContextState();
};

class TlsSession {
 public:
  // The context's state is kept alive by the session (the ALPN callback refers to it). A client
  // checks the certificate against server_hostname and sends it as SNI (unless it is an IP address).
  TlsSession(const SSLContext& context, const std::string& server_hostname);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  enum class Status { ok, want_read, closed };
  // One step of the handshake; ok when it is complete. Throws SSLCertVerificationError / SSLError.
  Status handshake();
  // Decrypts into dest: ok with got > 0, want_read (feed more ciphertext), closed (close_notify).
  Status read(char* dest, std::size_t capacity, std::size_t& got);
  // Encrypts all of [p, p+n) into the output.
  void write(const char* p, std::size_t n);
  // Queues close_notify (once).
  void shutdown() noexcept;
  // Ciphertext received from the peer.
  void feed(const char* p, std::size_t n);
  // Ciphertext to send to the peer, and its removal once taken.
  std::string_view output() const noexcept;
  void clear_output() noexcept;

  bool server_side() const noexcept { return server_side_; }
  bool handshake_done() const noexcept { return handshake_done_; }
  bool close_notify_received() const noexcept { return close_notify_received_; }
  const std::string& requested_hostname() const noexcept { return hostname_; }
  SSL* ssl() const noexcept { return ssl_; }

 private:
  [[noreturn]] void throw_error(int ret, const char* operation);

  std::shared_ptr<SSLContextState> context_;
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // owned by ssl_
  BIO* out_ = nullptr;  // owned by ssl_
  std::string hostname_;
  bool server_side_;
  bool handshake_done_ = false;
  bool close_notify_received_ = false;
  bool shutdown_sent_ = false;
};

}  // namespace awith::detail
