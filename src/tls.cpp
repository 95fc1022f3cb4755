#include "awith/tls.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <stdexcept>

#include "tls_session.hpp"

namespace awith {

namespace {

// The oldest error of OpenSSL's thread-local queue as (library, reason); clears the queue so a
// later call does not report a stale error.
std::pair<std::string, std::string> take_openssl_error() {
  unsigned long code = ERR_get_error();
  std::string library, reason;
  if (code != 0) {
    const char* lib = ERR_lib_error_string(code);
    const char* why = ERR_reason_error_string(code);
    library = lib ? lib : "";
    reason = why ? why : "error " + std::to_string(ERR_GET_REASON(code));
  }
  ERR_clear_error();
  return {library, reason};
}

[[noreturn]] void raise_ssl(const std::string& operation) {
  auto [library, reason] = take_openssl_error();
  std::string what = operation;
  if (!reason.empty()) what += ": " + reason;
  throw SSLError(what, library, reason);
}

void check_readable(const std::string& path, const char* operation) {
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    std::fclose(f);
    return;
  }
  throw_os_error(errno, std::string(operation) + "(" + path + ")");
}

bool is_ip_address(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// The server's ALPN choice: its most preferred protocol that the client offers.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                void* arg) {
  auto* state = static_cast<detail::SSLContextState*>(arg);
  const auto* prefs = reinterpret_cast<const unsigned char*>(state->alpn_wire.data());
  for (std::size_t i = 0; i < state->alpn_wire.size(); i += 1 + prefs[i]) {
    for (unsigned j = 0; j < inlen; j += 1u + in[j]) {
      if (in[j] == prefs[i] && j + 1u + in[j] <= inlen && std::equal(in + j + 1, in + j + 1 + in[j], prefs + i + 1)) {
        *out = in + j + 1;
        *outlen = in[j];
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_NOACK;
}

std::string name_to_string(X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return {};
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? static_cast<std::size_t>(n) : 0);
  BIO_free(bio);
  return out;
}

struct PeerCertificate {
  X509* cert;
  explicit PeerCertificate(SSL* ssl) : cert(ssl ? SSL_get1_peer_certificate(ssl) : nullptr) {}
  ~PeerCertificate() { X509_free(cert); }
  PeerCertificate(const PeerCertificate&) = delete;
  PeerCertificate& operator=(const PeerCertificate&) = delete;
};

}  // namespace

// --- errors ------------------------------------------------------------------------------------

SSLError::SSLError(const std::string& what, std::string library, std::string reason)
    : OSError(EPROTO, what), library_(std::move(library)), reason_(std::move(reason)) {}

SSLCertVerificationError::SSLCertVerificationError(const std::string& what, long verify_code,
                                                   std::string verify_message)
    : SSLError(what, "SSL routines", "certificate verify failed"),
      verify_code_(verify_code),
      verify_message_(std::move(verify_message)) {}

// --- SSLContext ----------------------------------------------------------------------------------

detail::SSLContextState::~SSLContextState() { SSL_CTX_free(ctx); }

SSLContext::SSLContext(Side side) : state_(std::make_shared<detail::SSLContextState>()) {
  state_->side = side;
  state_->ctx = SSL_CTX_new(side == Side::client ? TLS_client_method() : TLS_server_method());
  if (!state_->ctx) raise_ssl("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(state_->ctx, TLS1_2_VERSION);
  if (side == Side::client) {
    SSL_CTX_set_verify(state_->ctx, SSL_VERIFY_PEER, nullptr);
    state_->check_hostname = true;
  } else {
    SSL_CTX_set_verify(state_->ctx, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_alpn_select_cb(state_->ctx, &select_alpn, state_.get());
  }
}

SSLContext::Side SSLContext::side() const noexcept { return state_->side; }
SSL_CTX* SSLContext::native_handle() const noexcept { return state_->ctx; }
bool SSLContext::check_hostname() const noexcept { return state_->check_hostname; }
bool SSLContext::verifies_peer() const noexcept {
  return (SSL_CTX_get_verify_mode(state_->ctx) & SSL_VERIFY_PEER) != 0;
}

void SSLContext::load_cert_chain(const std::string& certfile, const std::string& keyfile) {
  const std::string& key = keyfile.empty() ? certfile : keyfile;
  check_readable(certfile, "load_cert_chain");
  check_readable(key, "load_cert_chain");
  if (SSL_CTX_use_certificate_chain_file(state_->ctx, certfile.c_str()) != 1)
    raise_ssl("load_cert_chain(" + certfile + ")");
  if (SSL_CTX_use_PrivateKey_file(state_->ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
    raise_ssl("load_cert_chain(" + key + ")");
  if (SSL_CTX_check_private_key(state_->ctx) != 1) raise_ssl("load_cert_chain: the key does not match the certificate");
}

void SSLContext::load_verify_locations(const std::string& cafile) {
  check_readable(cafile, "load_verify_locations");
  if (SSL_CTX_load_verify_locations(state_->ctx, cafile.c_str(), nullptr) != 1)
    raise_ssl("load_verify_locations(" + cafile + ")");
}

void SSLContext::load_default_certs() {
  if (SSL_CTX_set_default_verify_paths(state_->ctx) != 1) raise_ssl("load_default_certs");
}

void SSLContext::set_alpn_protocols(std::vector<std::string> protocols) {
  std::string wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) throw std::invalid_argument("set_alpn_protocols(): protocol names are 1-255 bytes");
    wire += static_cast<char>(p.size());
    wire += p;
  }
  state_->alpn_wire = std::move(wire);
  if (state_->side == Side::client &&
      SSL_CTX_set_alpn_protos(state_->ctx, reinterpret_cast<const unsigned char*>(state_->alpn_wire.data()),
                              static_cast<unsigned>(state_->alpn_wire.size())) != 0)
    raise_ssl("set_alpn_protocols");
}

void SSLContext::require_client_certificate() {
  if (state_->side != Side::server) throw std::invalid_argument("require_client_certificate(): not a server context");
  SSL_CTX_set_verify(state_->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
}

void SSLContext::dangerously_disable_verification() {
  state_->check_hostname = false;
  SSL_CTX_set_verify(state_->ctx, SSL_VERIFY_NONE, nullptr);
}

SSLContext create_default_context(Purpose purpose, const std::string& cafile) {
  if (purpose == Purpose::client_auth) return SSLContext(SSLContext::Side::server);
  SSLContext ctx(SSLContext::Side::client);
  if (cafile.empty()) {
    ctx.load_default_certs();
  } else {
    ctx.load_verify_locations(cafile);
  }
  return ctx;
}

// --- TlsSession ----------------------------------------------------------------------------------

namespace detail {

TlsSession::TlsSession(const SSLContext& context, const std::string& server_hostname)
    : context_(context.state_), hostname_(server_hostname), server_side_(context_->side == SSLContext::Side::server) {
  if (!server_side_ && context_->check_hostname && hostname_.empty())
    throw std::invalid_argument("TLS: host name checking needs a server_hostname");
  ssl_ = SSL_new(context_->ctx);
  if (!ssl_) raise_ssl("SSL_new");
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!in_ || !out_) {
    BIO_free(in_);
    BIO_free(out_);
    SSL_free(ssl_);
    raise_ssl("BIO_new");
  }
  BIO_set_mem_eof_return(in_, -1);  // an empty input BIO means "wait for more", not EOF
  SSL_set_bio(ssl_, in_, out_);
  if (server_side_) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  if (hostname_.empty()) return;
  bool ip = is_ip_address(hostname_);
  bool ok = true;
  if (context_->check_hostname) {
    ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), hostname_.c_str()) == 1
            : SSL_set1_host(ssl_, hostname_.c_str()) == 1;
  }
  if (ok && !ip) ok = SSL_set_tlsext_host_name(ssl_, hostname_.c_str()) == 1;
  if (!ok) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    raise_ssl("TLS: invalid server_hostname '" + hostname_ + "'");
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

void TlsSession::throw_error(int ret, const char* operation) {
  int err = SSL_get_error(ssl_, ret);
  if (!handshake_done_ && SSL_get_verify_result(ssl_) != X509_V_OK) {
    long code = SSL_get_verify_result(ssl_);
    std::string message = X509_verify_cert_error_string(code);
    ERR_clear_error();
    if (code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH)
      message += ", certificate is not valid for '" + hostname_ + "'";
    throw SSLCertVerificationError("certificate verify failed: " + message, code, message);
  }
  if (err == SSL_ERROR_SSL) raise_ssl(operation);
  ERR_clear_error();
  throw SSLError(std::string(operation) + ": OpenSSL error " + std::to_string(err));
}

TlsSession::Status TlsSession::handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_done_ = true;
    return Status::ok;
  }
  if (SSL_get_error(ssl_, r) == SSL_ERROR_WANT_READ) return Status::want_read;
  throw_error(r, "TLS handshake");
}

TlsSession::Status TlsSession::read(char* dest, std::size_t capacity, std::size_t& got) {
  got = 0;
  ERR_clear_error();
  int r = SSL_read_ex(ssl_, dest, capacity, &got);
  if (r == 1) return Status::ok;
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
      return Status::want_read;
    case SSL_ERROR_ZERO_RETURN:
      close_notify_received_ = true;
      return Status::closed;
    default:
      throw_error(r, "TLS read");
  }
}

void TlsSession::write(const char* p, std::size_t n) {
  if (n == 0) return;
  ERR_clear_error();
  std::size_t written = 0;
  int r = SSL_write_ex(ssl_, p, n, &written);
  if (r != 1) throw_error(r, "TLS write");
}

void TlsSession::shutdown() noexcept {
  if (shutdown_sent_ || !handshake_done_) return;
  shutdown_sent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

void TlsSession::feed(const char* p, std::size_t n) {
  if (n == 0) return;
  if (BIO_write(in_, p, static_cast<int>(n)) != static_cast<int>(n)) raise_ssl("TLS: buffering received data");
}

std::string_view TlsSession::output() const noexcept {
  char* data = nullptr;
  long n = BIO_get_mem_data(out_, &data);
  return n > 0 ? std::string_view(data, static_cast<std::size_t>(n)) : std::string_view();
}

void TlsSession::clear_output() noexcept { (void)BIO_reset(out_); }

}  // namespace detail

// --- SSLObject -----------------------------------------------------------------------------------

bool SSLObject::server_side() const noexcept { return session_->server_side(); }
SSL* SSLObject::native_handle() const noexcept { return session_->ssl(); }
bool SSLObject::peer_sent_close_notify() const noexcept { return session_->close_notify_received(); }

std::optional<std::string> SSLObject::server_hostname() const {
  if (!session_->server_side()) {
    if (session_->requested_hostname().empty()) return std::nullopt;
    return session_->requested_hostname();
  }
  const char* name = SSL_get_servername(session_->ssl(), TLSEXT_NAMETYPE_host_name);
  if (!name) return std::nullopt;
  return std::string(name);
}

std::optional<std::string> SSLObject::selected_alpn_protocol() const {
  const unsigned char* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(session_->ssl(), &data, &len);
  if (!data || len == 0) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::string SSLObject::version() const { return SSL_get_version(session_->ssl()); }

std::string SSLObject::cipher() const {
  const SSL_CIPHER* c = SSL_get_current_cipher(session_->ssl());
  return c ? SSL_CIPHER_get_name(c) : "";
}

std::optional<std::string> SSLObject::peer_certificate_subject() const {
  PeerCertificate peer(session_->ssl());
  if (!peer.cert) return std::nullopt;
  return name_to_string(X509_get_subject_name(peer.cert));
}

std::optional<std::string> SSLObject::peer_certificate_issuer() const {
  PeerCertificate peer(session_->ssl());
  if (!peer.cert) return std::nullopt;
  return name_to_string(X509_get_issuer_name(peer.cert));
}

std::vector<std::string> SSLObject::peer_certificate_alt_names() const {
  std::vector<std::string> out;
  PeerCertificate peer(session_->ssl());
  if (!peer.cert) return out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(peer.cert, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_STRING* s = name->d.dNSName;
      out.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                         static_cast<std::size_t>(ASN1_STRING_length(s))));
    } else if (name->type == GEN_IPADD) {
      const ASN1_STRING* s = name->d.iPAddress;
      char buf[INET6_ADDRSTRLEN] = {};
      int len = ASN1_STRING_length(s);
      if (len == 4 || len == 16)
        ::inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), buf, sizeof buf);
      out.push_back(std::string("IP:") + buf);
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace awith
