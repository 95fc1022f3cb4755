// TLS: handshakes between awith peers and against Python's ssl module (asyncio and plain sockets),
// verification failures as typed errors, SNI, ALPN, start_tls, close_notify. The certificates come
// from tests/support/make_certs.sh (a throwaway CA), run by a CTest fixture or, when the binary is
// run by hand, by the first test that needs them.
#include <gtest/gtest.h>
#include <openssl/x509_vfy.h>

#include <cstdlib>

#include "awith/awith.hpp"
#include "awith/server.hpp"
#include "awith/stream.hpp"
#include "awith/tls.hpp"
#include "io/io_support.hpp"

using namespace awith;
using namespace std::chrono_literals;
using test::run_command;

namespace {

const std::string& cert_dir() {
  static const std::string dir = [] {
    std::string d = AWITH_TEST_CERT_DIR;
    std::string command = std::string(AWITH_MAKE_CERTS_SCRIPT) + " " + d;
    if (std::system(command.c_str()) != 0) throw std::runtime_error("could not generate the test certificates");
    return d;
  }();
  return dir;
}
std::string cert(const std::string& name) { return cert_dir() + "/" + name; }

SSLContext server_context(std::vector<std::string> alpn = {}) {
  auto ctx = create_default_context(Purpose::client_auth);
  ctx.load_cert_chain(cert("server.pem"), cert("server.key"));
  if (!alpn.empty()) ctx.set_alpn_protocols(std::move(alpn));
  return ctx;
}
SSLContext client_context(const std::string& ca = "ca.pem", std::vector<std::string> alpn = {}) {
  auto ctx = create_default_context(Purpose::server_auth, cert(ca));
  if (!alpn.empty()) ctx.set_alpn_protocols(std::move(alpn));
  return ctx;
}
// Options are built before the co_await (g++ 12 destroys an aggregate temporary of a co_await
// expression twice when the await throws).
StreamOptions tls_options(SSLContext ctx, std::string server_hostname = {}) {
  StreamOptions o;
  o.ssl = std::move(ctx);
  o.server_hostname = std::move(server_hostname);
  return o;
}
ServerOptions tls_server_options(SSLContext ctx) {
  ServerOptions o;
  o.ssl = std::move(ctx);
  return o;
}
std::uint16_t port_of(const Server& s) { return s.sockets().at(0).sockname.port(); }

SSLObject ssl_of(const StreamWriter& w) { return std::any_cast<SSLObject>(w.get_extra_info("ssl_object")); }

// Echoes lines with a prefix until EOF.
Task<void> echo_lines(StreamReader r, StreamWriter w) {
  for (;;) {
    std::string line = co_await r.readline();
    if (line.empty()) break;
    w.write("tls:" + line);
    co_await w.drain();
  }
}

// Starts a Python program that prints one line (a port) and keeps running; returns its pipe.
Task<FILE*> start_python(const std::string& script, std::string& first_line) {
  FILE* p = ::popen(("timeout 20 /usr/bin/python3 -c '" + script + "'").c_str(), "r");
  if (!p) co_return nullptr;
  auto reading = to_thread([p] {
    char line[128] = {};
    return std::string(std::fgets(line, sizeof line, p) ? line : "");
  });
  first_line = co_await reading;
  co_return p;
}
Task<std::string> finish_python(FILE* p) {
  auto reading = to_thread([p] { return test::read_and_close(p); });
  co_return co_await reading;
}

}  // namespace

// An awith client and server: the handshake verifies the chain and the host name, SNI reaches the
// server, ALPN picks the server's preference, data flows both ways, peer certificate visible.
TEST(Tls, HandshakeSniAlpnAndEcho) {
  run([&]() -> Task<void> {
    std::optional<std::string> seen_sni, seen_alpn;
    auto server_options = tls_server_options(server_context({"h2", "http/1.1"}));
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          auto ssl = ssl_of(w);
          seen_sni = ssl.server_hostname();
          seen_alpn = ssl.selected_alpn_protocol();
          co_await echo_lines(r, w);
        },
        "127.0.0.1", 0, server_options);
    auto options = tls_options(client_context("ca.pem", {"http/1.1", "h2"}));
    auto [r, w] = co_await open_connection("localhost", port_of(server), options);
    w.write("hello\n");
    EXPECT_EQ(co_await r.readline(), "tls:hello\n");
    auto ssl = ssl_of(w);
    EXPECT_FALSE(ssl.server_side());
    EXPECT_EQ(ssl.selected_alpn_protocol(), std::string("h2"));
    EXPECT_EQ(ssl.server_hostname(), std::string("localhost"));
    EXPECT_EQ(ssl.peer_certificate_subject(), std::string("CN=localhost,O=awith test"));
    EXPECT_EQ(ssl.peer_certificate_issuer(), std::string("CN=awith test CA,O=awith test"));
    EXPECT_EQ(ssl.peer_certificate_alt_names(), (std::vector<std::string>{"DNS:localhost", "IP:127.0.0.1"}));
    EXPECT_EQ(ssl.version(), "TLSv1.3");
    EXPECT_FALSE(ssl.cipher().empty());
    EXPECT_FALSE(w.can_write_eof());
    EXPECT_THROW(w.write_eof(), RuntimeError);
    EXPECT_EQ(seen_sni, std::string("localhost"));
    EXPECT_EQ(seen_alpn, std::string("h2"));
    w.close();
    co_await w.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// Connecting by IP address checks the certificate's IP SAN (and sends no SNI); no ALPN overlap
// negotiates none; a megabyte each way exercises partial sends and drain over TLS.
TEST(Tls, IpAddressNoAlpnOverlapAndBulkData) {
  run([&]() -> Task<void> {
    std::optional<std::string> seen_sni = "unset";
    auto server_options = tls_server_options(server_context({"h2"}));
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          seen_sni = ssl_of(w).server_hostname();
          std::string data = co_await r.readexactly(1 << 20);
          w.write(data);
          co_await w.drain();
        },
        "127.0.0.1", 0, server_options);
    auto options = tls_options(client_context("ca.pem", {"spdy/3"}));
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server), options);
    EXPECT_EQ(ssl_of(w).selected_alpn_protocol(), std::nullopt);
    std::string payload(1 << 20, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
    w.write(payload);
    co_await w.drain();
    EXPECT_EQ(co_await r.readexactly(payload.size()), payload);
    EXPECT_EQ(co_await r.read(), "");  // the server closed with close_notify
    EXPECT_TRUE(ssl_of(w).peer_sent_close_notify());
    EXPECT_EQ(seen_sni, std::nullopt);
    w.close();
    co_await w.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// The certificate is for localhost / 127.0.0.1: any other name fails verification, typed.
TEST(Tls, HostnameMismatchIsCertVerificationError) {
  run([&]() -> Task<void> {
    auto server_options = tls_server_options(server_context());
    auto server = co_await start_server(echo_lines, "127.0.0.1", 0, server_options);
    auto options = tls_options(client_context(), "wrong.example");
    long code = 0;
    std::string what;
    try {
      co_await open_connection("127.0.0.1", port_of(server), options);
    } catch (const SSLCertVerificationError& e) {
      code = e.verify_code();
      what = e.what();
    }
    EXPECT_EQ(code, X509_V_ERR_HOSTNAME_MISMATCH);
    EXPECT_NE(what.find("wrong.example"), std::string::npos) << what;
    // The server survived the failed handshake and still serves.
    auto good = tls_options(client_context(), "localhost");
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server), good);
    w.write("again\n");
    EXPECT_EQ(co_await r.readline(), "tls:again\n");
    w.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// A client that trusts another CA rejects the server; the server side sees the client's alert as
// a typed SSLError (through start_tls here, to observe it).
TEST(Tls, UntrustedCaIsCertVerificationErrorOnBothSides) {
  run([&]() -> Task<void> {
    std::string server_error;
    auto server = co_await start_server(
        [&](StreamReader, StreamWriter w) -> Task<void> {
          try {
            co_await w.start_tls(server_context());
          } catch (const SSLError& e) {
            server_error = e.reason();
          }
        },
        "127.0.0.1", 0);
    auto options = tls_options(client_context("other-ca.pem"));
    long code = 0;
    try {
      co_await open_connection("localhost", port_of(server), options);
    } catch (const SSLCertVerificationError& e) {
      code = e.verify_code();
    }
    EXPECT_EQ(code, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    server.close();
    co_await server.wait_closed();
    EXPECT_EQ(server_error, "tlsv1 alert unknown ca");
  }());
}

// Verification can only be switched off explicitly; then the same untrusted server is accepted.
TEST(Tls, DangerouslyDisableVerificationAcceptsAnyPeer) {
  run([&]() -> Task<void> {
    auto server_options = tls_server_options(server_context());
    auto server = co_await start_server(echo_lines, "127.0.0.1", 0, server_options);
    SSLContext ctx(SSLContext::Side::client);
    EXPECT_TRUE(ctx.verifies_peer());
    EXPECT_TRUE(ctx.check_hostname());
    ctx.dangerously_disable_verification();
    EXPECT_FALSE(ctx.verifies_peer());
    auto options = tls_options(ctx, "anything.example");
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server), options);
    w.write("x\n");
    EXPECT_EQ(co_await r.readline(), "tls:x\n");
    w.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// Bad configuration: typed errors, at once.
TEST(Tls, ContextErrors) {
  SSLContext ctx(SSLContext::Side::server);
  try {
    ctx.load_cert_chain("/nonexistent/cert.pem");
    ADD_FAILURE() << "no error";
  } catch (const OSError& e) {
    EXPECT_EQ(e.errno_value(), ENOENT);
  }
  EXPECT_THROW(ctx.load_cert_chain(cert("server.pem"), cert("client.key")), SSLError);
  EXPECT_THROW(ctx.load_verify_locations(cert("server.key")), SSLError);
  EXPECT_THROW(ctx.set_alpn_protocols({""}), std::invalid_argument);
  EXPECT_THROW(SSLContext(SSLContext::Side::client).require_client_certificate(), std::invalid_argument);
  // A verifying client context needs a host name to check.
  run([&]() -> Task<void> {
    auto server = co_await start_server(echo_lines, "127.0.0.1", 0);
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
    EXPECT_THROW(co_await w.start_tls(client_context()), std::invalid_argument);
    w.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// A peer that never answers the handshake: TimeoutError after ssl_handshake_timeout, connection
// aborted.
TEST(Tls, HandshakeTimeout) {
  run([&]() -> Task<void> {
    auto server = co_await start_server(
        [](StreamReader r, StreamWriter) -> Task<void> { co_await r.read(); }, "127.0.0.1", 0);
    auto options = tls_options(client_context(), "localhost");
    options.ssl_handshake_timeout = 200ms;
    auto start = EventLoop::running().time();
    EXPECT_THROW(co_await open_connection("127.0.0.1", port_of(server), options), TimeoutError);
    auto elapsed = EventLoop::running().time() - start;
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 5s);
    server.close();
    co_await server.wait_closed();  // the server's reader saw the abort
  }());
}

// STARTTLS: a plain connection upgraded in place on both sides.
TEST(Tls, StartTlsUpgradesAPlainConnection) {
  run([&]() -> Task<void> {
    bool server_was_plain = false;
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          if (co_await r.readline() != "STARTTLS\n") co_return;
          server_was_plain = !w.get_extra_info("ssl_object").has_value();
          w.write("OK\n");
          co_await w.start_tls(server_context());
          co_await echo_lines(r, w);
        },
        "127.0.0.1", 0);
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server));
    w.write("STARTTLS\n");
    EXPECT_EQ(co_await r.readline(), "OK\n");
    EXPECT_FALSE(w.get_extra_info("ssl_object").has_value());
    co_await w.start_tls(client_context(), "localhost");
    EXPECT_EQ(ssl_of(w).peer_certificate_subject(), std::string("CN=localhost,O=awith test"));
    w.write("secret\n");
    EXPECT_EQ(co_await r.readline(), "tls:secret\n");
    EXPECT_THROW(co_await w.start_tls(client_context(), "localhost"), RuntimeError);
    EXPECT_TRUE(server_was_plain);
    w.close();
    co_await w.wait_closed();
    server.close();
    co_await server.wait_closed();
  }());
}

// Client certificates: a server that requires one rejects a client without, accepts one with.
TEST(Tls, RequiredClientCertificate) {
  run([&]() -> Task<void> {
    auto sctx = server_context();
    sctx.load_verify_locations(cert("ca.pem"));
    sctx.require_client_certificate();
    std::optional<std::string> client_subject;
    auto server_options = tls_server_options(sctx);
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          client_subject = ssl_of(w).peer_certificate_subject();
          co_await echo_lines(r, w);
        },
        "127.0.0.1", 0, server_options);
    // TLS 1.3: the client finishes its handshake before the server checks it; the rejection
    // arrives as an alert on the first read.
    {
      auto options = tls_options(client_context(), "localhost");
      bool rejected = false;
      try {
        auto [r, w] = co_await open_connection("127.0.0.1", port_of(server), options);
        w.write("hi\n");
        co_await r.readline();
      } catch (const SSLError& e) {
        rejected = e.reason() == "tlsv13 alert certificate required";
      }
      EXPECT_TRUE(rejected);
    }
    auto cctx = client_context();
    cctx.load_cert_chain(cert("client.pem"), cert("client.key"));
    auto options = tls_options(cctx, "localhost");
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server), options);
    w.write("hi\n");
    EXPECT_EQ(co_await r.readline(), "tls:hi\n");
    EXPECT_EQ(client_subject, std::string("CN=awith test client,O=awith test"));
    w.close();
    server.close();
    co_await server.wait_closed();
  }());
}

// The awith client against Python's asyncio TLS server (ssl module, ALPN).
TEST(Tls, ClientAgainstPythonAsyncioTlsServer) {
  run([&]() -> Task<void> {
    const std::string script =
        "import asyncio,ssl\n"
        "ctx=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
        "ctx.load_cert_chain(\"" + cert("server.pem") + "\",\"" + cert("server.key") + "\")\n"
        "ctx.set_alpn_protocols([\"http/1.1\"])\n"
        "async def h(r,w):\n"
        "  while (l:=await r.readline()):\n"
        "    w.write(l.upper()); await w.drain()\n"
        "  w.close(); done.set()\n"
        "async def main():\n"
        "  global done; done=asyncio.Event()\n"
        "  s=await asyncio.start_server(h,\"127.0.0.1\",0,ssl=ctx)\n"
        "  print(s.sockets[0].getsockname()[1],flush=True)\n"
        "  await asyncio.wait_for(done.wait(),10)\n"
        "  await asyncio.sleep(0.1)\n"
        "  print(\"done\")\n"
        "asyncio.run(main())\n";
    std::string port_line;
    FILE* p = co_await start_python(script, port_line);
    if (!p || port_line.empty()) {
      ADD_FAILURE() << "the Python server did not start";
      co_return;
    }
    auto options = tls_options(client_context("ca.pem", {"h2", "http/1.1"}));
    auto [r, w] = co_await open_connection("localhost", static_cast<std::uint16_t>(std::stoi(port_line)), options);
    EXPECT_EQ(ssl_of(w).selected_alpn_protocol(), std::string("http/1.1"));
    w.write("hello\n");
    w.writelines({"tls ", "world\n"});
    EXPECT_EQ(co_await r.readline(), "HELLO\n");
    EXPECT_EQ(co_await r.readline(), "TLS WORLD\n");
    w.close();  // close_notify: Python's reader sees EOF and ends
    co_await w.wait_closed();
    EXPECT_EQ(co_await finish_python(p), "done\n");
  }());
}

// Python's asyncio TLS client against the awith server; Python's close sends close_notify, which
// the server observes.
TEST(Tls, ServesPythonAsyncioTlsClient) {
  run([&]() -> Task<void> {
    bool clean_close = false;
    auto server_options = tls_server_options(server_context());
    auto server = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          co_await echo_lines(r, w);
          clean_close = ssl_of(w).peer_sent_close_notify();
        },
        "127.0.0.1", 0, server_options);
    const std::string script =
        "import asyncio,ssl,sys\n"
        "ctx=ssl.create_default_context(cafile=\"" + cert("ca.pem") + "\")\n"
        "async def main(port):\n"
        "  r,w=await asyncio.open_connection(\"localhost\",port,ssl=ctx)\n"
        "  for i in range(50): w.write(b\"line %d\\n\" % i)\n"
        "  await w.drain()\n"
        "  got=[await r.readline() for i in range(50)]\n"
        "  w.close(); await w.wait_closed()\n"
        "  print(\"ok\" if got==[b\"tls:line %d\\n\" % i for i in range(50)] else got)\n"
        "asyncio.run(asyncio.wait_for(main(int(sys.argv[1])),10))\n";
    auto out = co_await run_command("timeout 15 /usr/bin/python3 -c '" + script + "' " +
                                    std::to_string(port_of(server)) + " 2>&1");
    EXPECT_EQ(out, "ok\n");
    server.close();
    co_await server.wait_closed();
    EXPECT_TRUE(clean_close);
  }());
}

// close() ends the TLS session with close_notify, after the data: a Python ssl socket that treats
// a bare TCP close as an error (suppress_ragged_eofs=False) sees a clean end. abort() sends none.
TEST(Tls, CloseSendsCloseNotifyAbortDoesNot) {
  run([&]() -> Task<void> {
    const std::string script =
        "import socket,ssl\n"
        "ctx=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)\n"
        "ctx.load_cert_chain(\"" + cert("server.pem") + "\",\"" + cert("server.key") + "\")\n"
        "ls=socket.create_server((\"127.0.0.1\",0))\n"
        "ls.settimeout(10)\n"
        "print(ls.getsockname()[1],flush=True)\n"
        "for i in range(2):\n"
        "  c,_=ls.accept(); c.settimeout(10)\n"
        "  s=ctx.wrap_socket(c,server_side=True,suppress_ragged_eofs=False)\n"
        "  data=b\"\"\n"
        "  try:\n"
        "    while (b:=s.recv(4096)): data+=b\n"
        "    print(data, \"close_notify\")\n"
        "  except (ssl.SSLEOFError, ConnectionResetError):\n"
        "    print(data, \"no close_notify\")\n"
        "  s.close()\n";
    std::string port_line;
    FILE* p = co_await start_python(script, port_line);
    if (!p || port_line.empty()) {
      ADD_FAILURE() << "the Python server did not start";
      co_return;
    }
    auto port = static_cast<std::uint16_t>(std::stoi(port_line));
    auto options = tls_options(client_context(), "localhost");
    {
      auto [r, w] = co_await open_connection("127.0.0.1", port, options);
      w.write("last words\n");
      w.close();
      co_await w.wait_closed();
    }
    {
      auto [r, w] = co_await open_connection("127.0.0.1", port, options);
      w.write("cut\n");
      co_await w.drain();
      co_await sleep(100ms);  // let the data arrive before the reset
      w.abort();
    }
    EXPECT_EQ(co_await finish_python(p), "b'last words\\n' close_notify\nb'cut\\n' no close_notify\n");
  }());
}

// A peer that stops reading cannot keep a closing TLS connection open: the server's teardown
// (close, then wait_closed in a shielded scope) and a client's close() both give up after
// ssl_shutdown_timeout and abort.
TEST(Tls, CloseIsBoundedBySslShutdownTimeout) {
  run([&]() -> Task<void> {
    auto& loop = EventLoop::running();
    auto server_options = tls_server_options(server_context());
    server_options.ssl_shutdown_timeout = 300ms;
    std::optional<TimePoint> handler_returned;
    auto server = co_await start_server(
        [&](StreamReader, StreamWriter w) -> Task<void> {
          std::string chunk(1 << 20, 'x');
          for (int i = 0; i < 32; ++i) w.write(chunk);  // more than both socket buffers hold
          handler_returned = loop.time();
          co_return;
        },
        "127.0.0.1", 0, server_options);
    auto options = tls_options(client_context(), "localhost");
    options.ssl_shutdown_timeout = 300ms;
    {
      auto [r, w] = co_await open_connection("127.0.0.1", port_of(server), options);  // never reads
      for (int i = 0; i < 500 && !handler_returned; ++i) co_await sleep(10ms);
      EXPECT_TRUE(handler_returned.has_value());
      server.close();
      co_await server.wait_closed();
      if (handler_returned) {
        auto took = loop.time() - *handler_returned;
        EXPECT_GE(took, 250ms);
        EXPECT_LT(took, 3s);
      }
      w.abort();
    }
    // The client side: close() with data the server never reads; wait_closed() returns once
    // ssl_shutdown_timeout has passed (the transport aborts itself).
    bool released = false;
    auto server2 = co_await start_server(
        [&](StreamReader r, StreamWriter w) -> Task<void> {
          for (int i = 0; i < 1000 && !released; ++i) co_await sleep(10ms);  // not reading
          co_await echo_lines(r, w);
        },
        "127.0.0.1", 0, server_options);
    auto [r, w] = co_await open_connection("127.0.0.1", port_of(server2), options);
    std::string chunk(1 << 20, 'y');
    for (int i = 0; i < 32; ++i) w.write(chunk);
    auto closing = loop.time();
    w.close();
    co_await w.wait_closed();
    auto took = loop.time() - closing;
    EXPECT_GE(took, 250ms);
    EXPECT_LT(took, 3s);
    released = true;
    server2.close();
    co_await server2.wait_closed();
  }());
}
