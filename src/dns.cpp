// resolve(): getaddrinfo on the default executor; interleave_by_family(): RFC 8305's order.
#include "awith/dns.hpp"

#include <netdb.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "awith/thread.hpp"

namespace awith {

namespace {

// Runs on a pool thread (it blocks on files and DNS).
std::vector<SocketAddress> lookup(const std::string& host, std::uint16_t port, int family) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_socktype = SOCK_STREAM;
  // No IPv6 addresses on a host without IPv6 configured (and no IPv4 ones without IPv4): they
  // could only fail.
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    std::string reason = ::gai_strerror(rc);
    if (rc == EAI_SYSTEM) reason += std::string(": ") + std::strerror(errno);
    throw GaiError(rc, "getaddrinfo(" + host + "): " + reason);
  }
  std::vector<SocketAddress> out;
  for (auto* p = res; p; p = p->ai_next) {
    SocketAddress a(p->ai_addr, p->ai_addrlen);
    // /etc/hosts may list an address twice; a second attempt at it would only repeat the first.
    if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(a);
  }
  ::freeaddrinfo(res);
  return out;
}

}  // namespace

Task<std::vector<SocketAddress>> resolve(std::string host, std::uint16_t port, int family) {
  if (auto numeric = SocketAddress::from_numeric(host, port);
      numeric && (family == AF_UNSPEC || family == numeric->family())) {
    std::vector<SocketAddress> one;
    one.push_back(*numeric);
    co_return one;
  }
  // A named awaitable: g++ 12 destroys a capturing lambda temporary of a co_await expression twice.
  auto looking_up = to_thread([host = std::move(host), port, family] { return lookup(host, port, family); });
  co_return co_await looking_up;
}

std::vector<SocketAddress> interleave_by_family(std::vector<SocketAddress> addresses,
                                                std::size_t first_family_count) {
  if (first_family_count == 0) return addresses;
  std::vector<std::vector<SocketAddress>> families;
  for (auto& a : addresses) {
    auto same = std::find_if(families.begin(), families.end(),
                             [&](const auto& f) { return f.front().family() == a.family(); });
    if (same == families.end()) {
      families.emplace_back().push_back(std::move(a));
    } else {
      same->push_back(std::move(a));
    }
  }
  std::vector<SocketAddress> out;
  out.reserve(addresses.size());
  std::vector<std::size_t> next(families.size(), 0);
  if (!families.empty()) {
    for (; next[0] + 1 < first_family_count && next[0] < families[0].size(); ++next[0])
      out.push_back(families[0][next[0]]);
  }
  while (out.size() < addresses.size()) {
    for (std::size_t f = 0; f < families.size(); ++f)
      if (next[f] < families[f].size()) out.push_back(families[f][next[f]++]);
  }
  return out;
}

}  // namespace awith
