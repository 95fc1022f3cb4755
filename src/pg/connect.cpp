// Connection::connect: the DSN parsed by libpq, host names resolved with awith::resolve into every
// address (passed to libpq as a hostaddr list, so PQconnectStart never calls getaddrinfo on the
// loop thread), libpq's non-blocking handshake driven by the event loop, and the bounds libpq
// leaves to the caller in non-blocking mode (connect_timeout).
#include <libpq-fe.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstdlib>
#include <string_view>

#include "awith/cancel_scope.hpp"
#include "awith/dns.hpp"
#include "awith/pg/connection.hpp"
#include "awith/timeout.hpp"
#include "libpq_support.hpp"

namespace awith::pg {

using detail::ConnectParams;
using detail::ready_now;
using detail::trimmed;

namespace {

void ignore_notice(void*, const char*) {}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  for (std::size_t start = 0;;) {
    auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += items[i];
  }
  return out;
}

// A Unix-domain socket directory (or abstract socket), or the default (""): nothing to resolve.
bool is_socket(const std::string& host) { return host.empty() || host[0] == '/' || host[0] == '@'; }

// Fills host, hostaddr and port the DSN leaves out with what libpq would use (PGHOST, PGHOSTADDR,
// PGPORT, PGSERVICE): a name from the environment must be resolved here too. (An empty value
// passed to PQconnectStartParams counts as not given.)
void add_defaults(std::string& host, std::string& hostaddr, std::string& port) {
  PQconninfoOption* defaults = PQconndefaults();
  for (auto* o = defaults; o && o->keyword; ++o) {
    if (!o->val) continue;
    std::string_view key = o->keyword;
    if (key == "hostaddr" && hostaddr.empty()) hostaddr = o->val;
    if (key == "host" && host.empty()) host = o->val;
    if (key == "port" && port.empty()) port = o->val;
  }
  PQconninfoFree(defaults);
}

// connect_timeout as libpq reads it: whole seconds; zero or negative means no bound. A value libpq
// rejects is passed on for libpq to report. libpq raises values below 2 to 2 because it measures
// whole seconds; the loop's clock does not, so 1 means 1 s here.
std::optional<Duration> attempt_bound(const std::string& value) {
  char* end = nullptr;
  long seconds = std::strtol(value.c_str(), &end, 10);
  while (end && (*end == ' ' || *end == '\t')) ++end;
  if (!end || *end != '\0' || end == value.c_str() || seconds <= 0) return std::nullopt;
  return std::chrono::seconds(seconds);
}

std::string describe(Duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

// Parses the DSN (a plain function: it throws before any coroutine frame exists).
ConnectParams parse_dsn(const std::string& dsn) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(dsn.c_str(), &err);
  if (!opts) {
    std::string msg = "out of memory";
    if (err) msg = trimmed(err);
    PQfreemem(err);
    throw ConnectError("invalid DSN: " + msg);
  }
  ConnectParams out;
  std::string host, hostaddr, port;
  bool service = false;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    std::string_view key = o->keyword;
    service |= key == "service";
    if (key == "host") host = o->val;
    if (key == "hostaddr") hostaddr = o->val;
    if (key == "port") port = o->val;
    if (key == "connect_timeout") out.attempt_timeout = attempt_bound(o->val);
    if (key == "host" || key == "hostaddr" || key == "port") continue;
    out.keys.emplace_back(o->keyword);
    out.values.emplace_back(o->val);
  }
  PQconninfoFree(opts);
  const std::string given_port = port;
  // A service file named in the DSN comes before the environment inside libpq: then what the DSN
  // gives is all there is to resolve.
  if (!service) add_defaults(host, hostaddr, port);
  std::vector<std::string> hosts = split_list(host);
  std::vector<std::string> ports = split_list(port);
  bool any_name = false;
  for (auto& h : hosts) any_name |= !is_socket(h);
  // With hostaddr given libpq resolves nothing; a port list that does not match the hosts is
  // libpq's to report. Both pass as they are.
  const bool as_given = !hostaddr.empty() || !any_name || (ports.size() > 1 && ports.size() != hosts.size());
  if (as_given || ports.size() == 1) {
    out.keys.emplace_back("port");
    out.values.push_back(given_port);  // empty (no option) when libpq should take its default
  }
  if (as_given) {
    for (auto [key, value] : {std::pair{"host", &host}, std::pair{"hostaddr", &hostaddr}}) {
      out.keys.emplace_back(key);
      out.values.push_back(*value);
    }
    return out;
  }
  out.hosts = std::move(hosts);
  if (ports.size() > 1) out.ports = std::move(ports);
  return out;
}

[[noreturn]] void throw_connect_error(PGconn* c, const std::string& before, const std::string& after) {
  std::string msg = before + trimmed(PQerrorMessage(c)) + after;
  // libpq 15 exposes no SQLSTATE for connection failures: the server's FATAL texts (C locale).
  bool auth = msg.find("authentication failed") != std::string::npos ||
              msg.find("pg_hba.conf") != std::string::npos ||
              (msg.find("role \"") != std::string::npos && msg.find("does not exist") != std::string::npos);
  if (auth) throw AuthenticationError(msg);
  throw ConnectError(msg);
}

[[noreturn]] void throw_unresolved(const std::string& failures) { throw ConnectError(failures); }

[[noreturn]] void throw_bound_passed(Duration bound, bool by_default) {
  if (by_default)
    throw ConnectError("could not connect within " + describe(bound) +
                       " (Connection::connect's default bound without connect_timeout in the DSN)");
  throw ConnectError("could not connect within the connect timeout (" + describe(bound) + ")");
}

// The address libpq is trying: a new one restarts the connect_timeout of an attempt, as in libpq.
std::string attempt_of(PGconn* c) {
  auto text = [](const char* s) { return std::string(s ? s : ""); };
  return "\"" + text(PQhost(c)) + "\" (" + text(PQhostaddr(c)) + "), port " + text(PQport(c));
}

}  // namespace

Task<std::unique_ptr<Connection>> Connection::connect(std::string dsn, ConnectOptions options) {
  return connect_bounded(parse_dsn(dsn), options);
}

Task<std::unique_ptr<Connection>> Connection::connect_bounded(ConnectParams params, ConnectOptions options) {
  std::optional<Duration> bound = options.timeout;
  // Without any bound a black-holed server would hold the caller for minutes per address (the
  // kernel's SYN retries).
  const bool by_default = !bound && !params.attempt_timeout;
  if (by_default) bound = kDefaultConnectTimeout;
  if (!bound) co_return co_await connect_with(params, options);
  try {
    co_return co_await async_with(awith::timeout(*bound), [&]() -> Task<std::unique_ptr<Connection>> {
      co_return co_await connect_with(params, options);
    });
  } catch (const awith::TimeoutError&) {
    throw_bound_passed(*bound, by_default);
  }
}

Task<std::unique_ptr<Connection>> Connection::connect_with(const ConnectParams& params, ConnectOptions options) {
  std::vector<std::string> keys = params.keys, values = params.values;
  std::string unresolved;  // the names that did not resolve, in libpq's words
  if (!params.hosts.empty()) {
    // One host entry per address, the name repeated: TLS (SNI, verify-full) and libpq's messages
    // keep the name; libpq tries the entries in turn.
    std::vector<std::string> hosts, addresses, ports;
    for (std::size_t i = 0; i < params.hosts.size(); ++i) {
      const std::string& host = params.hosts[i];
      std::string port = params.ports.empty() ? std::string() : params.ports[i];
      if (is_socket(host)) {
        hosts.push_back(host);
        addresses.emplace_back();
        ports.push_back(port);
        continue;
      }
      std::vector<SocketAddress> resolved;
      try {
        resolved = co_await resolve(host, 0);
      } catch (const GaiError& e) {
        // As libpq does, a name that does not resolve is skipped for the next host.
        unresolved += (unresolved.empty() ? "" : "\n") + std::string("could not translate host name \"") + host +
                      "\" to address: " + ::gai_strerror(e.eai());
        continue;
      }
      for (const auto& a : resolved) {
        hosts.push_back(host);
        addresses.push_back(a.host());
        ports.push_back(port);
      }
    }
    if (hosts.empty()) throw_unresolved(unresolved);
    keys.emplace_back("host");
    values.push_back(join_list(hosts));
    keys.emplace_back("hostaddr");
    values.push_back(join_list(addresses));
    if (!params.ports.empty()) {
      keys.emplace_back("port");
      values.push_back(join_list(ports));
    }
  }
  const std::string after = unresolved.empty() ? std::string() : "\n" + unresolved;
  std::vector<const char*> key_ptrs, value_ptrs;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    key_ptrs.push_back(keys[i].c_str());
    value_ptrs.push_back(values[i].c_str());
  }
  key_ptrs.push_back(nullptr);
  value_ptrs.push_back(nullptr);
  PGconn* raw = PQconnectStartParams(key_ptrs.data(), value_ptrs.data(), 0);
  if (!raw) throw ConnectError("out of memory");
  std::unique_ptr<Connection> conn(new Connection(raw, options));
  if (PQstatus(raw) == CONNECTION_BAD) throw_connect_error(raw, "", after);
  std::string attempt;                      // the address being tried
  std::optional<TimePoint> attempt_deadline;  // when its connect_timeout passes
  std::string timed_out;                    // the attempts cut at their connect_timeout
  auto status = PGRES_POLLING_WRITING;
  for (;;) {
    // libpq may close the socket and open another (next host, SSL fallback): register afresh.
    int fd = PQsocket(raw);
    if (fd < 0) throw_connect_error(raw, timed_out, after);
    conn->watch_.attach(fd);
    if (params.attempt_timeout) {
      std::string now_trying = attempt_of(raw);
      if (now_trying != attempt) {
        attempt = std::move(now_trying);
        attempt_deadline = EventLoop::running().time() + *params.attempt_timeout;
      }
    }
    const bool reading = status == PGRES_POLLING_READING;
    if (!ready_now(fd, reading ? POLLIN : POLLOUT)) {
      CancelScope scope(attempt_deadline);
      co_await async_with(scope, [&]() -> Task<void> {
        if (reading) {
          conn->watch_.clear_readable();
          co_await conn->watch_.wait_readable();
        } else {
          conn->watch_.clear_writable();
          co_await conn->watch_.wait_writable();
        }
      });
      if (scope.cancelled_caught()) {
        // libpq ignores connect_timeout in non-blocking mode. Shutting the socket down fails the
        // attempt (a pending connect reports ECONNRESET), and libpq goes on to the next address
        // as after a refused connection; after the TCP handshake libpq tries no other address.
        ::shutdown(fd, SHUT_RDWR);
        timed_out += "timeout expired: connect_timeout=" + describe(*params.attempt_timeout) +
                     " passed connecting to " + attempt + "\n";
      }
    }
    status = PQconnectPoll(raw);
    if (status == PGRES_POLLING_FAILED) throw_connect_error(raw, timed_out, after);
    if (status == PGRES_POLLING_OK) break;
  }
  if (PQsetnonblocking(raw, 1) != 0) throw ConnectError("cannot make the connection non-blocking");
  // Notices (and a termination notice on an idle connection) must not go to stderr from a library.
  PQsetNoticeProcessor(raw, &ignore_notice, nullptr);
  conn->watch_.attach(PQsocket(raw));
  co_return conn;
}

}  // namespace awith::pg
