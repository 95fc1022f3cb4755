// Connection::connect: the DSN parsed by libpq, host names resolved off the loop thread, and
// libpq's non-blocking connection handshake driven by the event loop.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

#include "awith/pg/connection.hpp"
#include "awith/thread.hpp"
#include "libpq_support.hpp"

namespace awith::pg {

using detail::ready_now;
using detail::trimmed;

namespace {

void ignore_notice(void*, const char*) {}

// Host names in the DSN are resolved on the thread pool and passed to libpq as hostaddr:
// PQconnectStart would otherwise call getaddrinfo on the loop thread.
using detail::ConnectParams;

bool numeric_host(const std::string& h) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

std::string resolve_host(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) throw ConnectError("could not resolve host \"" + host + "\": " + gai_strerror(rc));
  char buf[INET6_ADDRSTRLEN] = {};
  const void* addr = res->ai_family == AF_INET
                         ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr)
                         : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr);
  inet_ntop(res->ai_family, addr, buf, sizeof buf);
  ::freeaddrinfo(res);
  return buf;
}

bool is_name(const std::string& h) { return !h.empty() && h[0] != '/' && h[0] != '@' && !numeric_host(h); }

// Parses the DSN (a plain function: it throws before any coroutine frame exists).
ConnectParams parse_dsn(const std::string& dsn, std::vector<std::string>& names_to_resolve) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    std::string msg = "out of memory";
    if (err) msg = trimmed(err);
    PQfreemem(err);
    throw ConnectError("invalid DSN: " + msg);
  }
  ConnectParams out;
  std::string host, hostaddr;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::strcmp(o->keyword, "host") == 0) host = o->val;
    if (std::strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
    out.keys.emplace_back(o->keyword);
    out.values.emplace_back(o->val);
  }
  PQconninfoFree(opts);
  if (!host.empty() && hostaddr.empty()) {
    // A comma-separated list of hosts: names are resolved, addresses and socket paths kept.
    std::vector<std::string> hosts;
    for (std::size_t start = 0;;) {
      auto comma = host.find(',', start);
      hosts.push_back(host.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    bool any_name = false;
    for (auto& h : hosts) any_name |= is_name(h);
    if (any_name) names_to_resolve = std::move(hosts);
  }
  return out;
}

// hostaddr for a host list: each name resolved, each address kept, socket paths left empty.
std::string resolve_hosts(const std::vector<std::string>& hosts) {
  std::string joined;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (i) joined += ',';
    const auto& h = hosts[i];
    if (is_name(h)) {
      joined += resolve_host(h);
    } else if (!h.empty() && h[0] != '/' && h[0] != '@') {
      joined += h;
    }
  }
  return joined;
}

[[noreturn]] void throw_connect_error(PGconn* c) {
  std::string msg = trimmed(PQerrorMessage(c));
  // libpq 15 exposes no SQLSTATE for connection failures: the server's FATAL texts (C locale).
  bool auth = msg.find("authentication failed") != std::string::npos ||
              msg.find("pg_hba.conf") != std::string::npos ||
              (msg.find("role \"") != std::string::npos && msg.find("does not exist") != std::string::npos);
  if (auth) throw AuthenticationError(msg);
  throw ConnectError(msg);
}

}  // namespace

Task<std::unique_ptr<Connection>> Connection::connect(std::string dsn, ConnectOptions options) {
  std::vector<std::string> names;
  return connect_with(parse_dsn(dsn, names), std::move(names), options);
}

Task<std::unique_ptr<Connection>> Connection::connect_with(ConnectParams params, std::vector<std::string> names,
                                                           ConnectOptions options) {
  if (!names.empty()) {
    std::string addrs = co_await to_thread([names] { return resolve_hosts(names); });
    params.keys.emplace_back("hostaddr");
    params.values.push_back(std::move(addrs));
  }
  std::vector<const char*> keys, values;
  for (std::size_t i = 0; i < params.keys.size(); ++i) {
    keys.push_back(params.keys[i].c_str());
    values.push_back(params.values[i].c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* raw = PQconnectStartParams(keys.data(), values.data(), 0);
  if (!raw) throw ConnectError("out of memory");
  std::unique_ptr<Connection> conn(new Connection(raw, options));
  if (PQstatus(raw) == CONNECTION_BAD) throw_connect_error(raw);
  auto status = PGRES_POLLING_WRITING;
  for (;;) {
    // libpq may close the socket and open another (next host, SSL fallback): register afresh.
    int fd = PQsocket(raw);
    if (fd < 0) throw_connect_error(raw);
    conn->watch_.attach(fd);
    if (status == PGRES_POLLING_READING) {
      if (!ready_now(fd, POLLIN)) {
        conn->watch_.clear_readable();
        co_await conn->watch_.wait_readable();
      }
    } else if (!ready_now(fd, POLLOUT)) {
      conn->watch_.clear_writable();
      co_await conn->watch_.wait_writable();
    }
    status = PQconnectPoll(raw);
    if (status == PGRES_POLLING_FAILED) throw_connect_error(raw);
    if (status == PGRES_POLLING_OK) break;
  }
  if (PQsetnonblocking(raw, 1) != 0) throw ConnectError("cannot make the connection non-blocking");
  // Notices (and a termination notice on an idle connection) must not go to stderr from a library.
  PQsetNoticeProcessor(raw, &ignore_notice, nullptr);
  conn->watch_.attach(PQsocket(raw));
  co_return conn;
}

}  // namespace awith::pg
