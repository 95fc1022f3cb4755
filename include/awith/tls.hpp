// TLS with OpenSSL (Python's ssl module, as asyncio uses it): contexts, the negotiated session's
// view, and the typed errors. Connections use them through open_connection / start_server
// (StreamOptions::ssl, ServerOptions::ssl) and StreamWriter::start_tls:
// snippet: tests/snippets/headers.cpp#tls_client
//
//   awith::StreamOptions options;
//   options.ssl = awith::create_default_context();  // verifies the server, checks its name
//   options.ssl->set_alpn_protocols({"h2", "http/1.1"});
//   auto [reader, writer] = co_await awith::open_connection("example.org", 443, options);
//   auto ssl = std::any_cast<awith::SSLObject>(writer.get_extra_info("ssl_object"));
//
// A client context verifies the peer's chain and host name by default; the only way to turn that
// off is dangerously_disable_verification(). The TLS engine runs over memory BIOs: the stream
// moves ciphertext through its non-blocking socket (waiting for readiness as every stream read
// does), so TLS never blocks the loop and follows the suspension contract of runtime.hpp.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "awith/io_errors.hpp"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace awith {

// A TLS protocol failure (Python's ssl.SSLError, an OSError). reason() is OpenSSL's reason string
// ("wrong version number", "tlsv1 alert unknown ca"...), library() its library ("SSL routines").
class SSLError : public OSError {
 public:
  SSLError(const std::string& what, std::string library = {}, std::string reason = {});
  const std::string& library() const noexcept { return library_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  std::string library_;
  std::string reason_;
};

// The peer's certificate did not verify (Python's ssl.SSLCertVerificationError): an untrusted or
// expired chain, or a certificate for another host name. verify_code() is OpenSSL's X509_V_ERR_*
// value (X509_V_ERR_HOSTNAME_MISMATCH = 62, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20...).
class SSLCertVerificationError : public SSLError {
 public:
  SSLCertVerificationError(const std::string& what, long verify_code, std::string verify_message);
  long verify_code() const noexcept { return verify_code_; }
  const std::string& verify_message() const noexcept { return verify_message_; }

 private:
  long verify_code_;
  std::string verify_message_;
};

namespace detail {
class TlsSession;
struct SSLContextState;
}  // namespace detail

// Python's ssl.Purpose: SERVER_AUTH makes a client context (it authenticates servers).
enum class Purpose { server_auth, client_auth };

// Python's ssl.SSLContext: configuration shared by many connections (a cheap, shared handle;
// copies refer to the same context). TLS 1.2 is the minimum version.
class SSLContext {
 public:
  enum class Side { client, server };
  // A client context verifies the peer and checks its host name (PROTOCOL_TLS_CLIENT) but trusts
  // no CA until load_verify_locations / load_default_certs; a server context asks for no client
  // certificate until require_client_certificate.
  explicit SSLContext(Side side);

  Side side() const noexcept;
  // The certificate chain (PEM, leaf first) and its private key (keyfile "" = in certfile).
  // OSError when a file cannot be read, SSLError when its content is unusable or they do not match.
  void load_cert_chain(const std::string& certfile, const std::string& keyfile = {});
  // Trust the CA certificates in cafile (PEM).
  void load_verify_locations(const std::string& cafile);
  // Trust the system's CA store (OpenSSL's default paths; Debian: /etc/ssl/certs).
  void load_default_certs();
  // ALPN, most preferred first. A server picks its most preferred protocol the client offers.
  void set_alpn_protocols(std::vector<std::string> protocols);
  // Server side: clients must present a certificate that verifies against the loaded CAs.
  void require_client_certificate();
  // Turns off certificate AND host name verification: any peer is accepted, including an attacker
  // in the middle. For tests against self-signed peers only.
  void dangerously_disable_verification();
  bool verifies_peer() const noexcept;
  bool check_hostname() const noexcept;
  SSL_CTX* native_handle() const noexcept;

 private:
  friend class detail::TlsSession;
  std::shared_ptr<detail::SSLContextState> state_;
};

// Python's ssl.create_default_context(purpose, cafile=...): server_auth gives a verifying client
// context trusting cafile, or the system's CAs when cafile is empty; client_auth gives a server
// context (load its certificate chain next).
SSLContext create_default_context(Purpose purpose = Purpose::server_auth, const std::string& cafile = {});

// What get_extra_info("ssl_object") returns on a TLS connection (Python's ssl.SSLObject, read-only):
// the negotiated session. Valid as long as it is held, even after the connection closed.
class SSLObject {
 public:
  explicit SSLObject(std::shared_ptr<detail::TlsSession> session) noexcept : session_(std::move(session)) {}
  bool server_side() const noexcept;
  // Client: the name it sent (SNI) and checked; server: the name the client asked for (SNI), if any.
  std::optional<std::string> server_hostname() const;
  // The ALPN protocol both sides agreed on, if any.
  std::optional<std::string> selected_alpn_protocol() const;
  std::string version() const;  // "TLSv1.3"
  std::string cipher() const;   // "TLS_AES_256_GCM_SHA384"
  // The peer certificate's subject and issuer (RFC 2253: "CN=localhost,O=awith test"), if the
  // peer presented one; and its DNS / IP subject alternative names.
  std::optional<std::string> peer_certificate_subject() const;
  std::optional<std::string> peer_certificate_issuer() const;
  std::vector<std::string> peer_certificate_alt_names() const;
  // Whether the peer ended its side with close_notify (false until it did, or when it just closed
  // the socket).
  bool peer_sent_close_notify() const noexcept;
  SSL* native_handle() const noexcept;

 private:
  std::shared_ptr<detail::TlsSession> session_;
};

}  // namespace awith
