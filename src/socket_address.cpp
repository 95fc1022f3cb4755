// SocketAddress: an address as the kernel gives it, printed as asyncio prints peernames.
#include "awith/socket_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace awith {

SocketAddress::SocketAddress(const sockaddr* sa, socklen_t len) noexcept {
  len_ = std::min<socklen_t>(len, sizeof storage_);
  std::memcpy(&storage_, sa, len_);
}

SocketAddress SocketAddress::local_of(int fd) noexcept {
  SocketAddress a;
  a.len_ = sizeof a.storage_;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage_), &a.len_) < 0) a.len_ = 0;
  return a;
}

SocketAddress SocketAddress::peer_of(int fd) noexcept {
  SocketAddress a;
  a.len_ = sizeof a.storage_;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a.storage_), &a.len_) < 0) a.len_ = 0;
  return a;
}

std::optional<SocketAddress> SocketAddress::from_numeric(const std::string& host, std::uint16_t port) noexcept {
  sockaddr_in v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    return SocketAddress(reinterpret_cast<const sockaddr*>(&v4), sizeof v4);
  }
  sockaddr_in6 v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    return SocketAddress(reinterpret_cast<const sockaddr*>(&v6), sizeof v6);
  }
  return std::nullopt;
}

bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept {
  return a.len_ == b.len_ && std::memcmp(&a.storage_, &b.storage_, a.len_) == 0;
}

std::string SocketAddress::host() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (len_ == 0) return {};
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf, sizeof buf);
    return buf;
  }
  if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf, sizeof buf);
    return buf;
  }
  if (family() == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
    std::size_t max = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
    return std::string(un->sun_path, ::strnlen(un->sun_path, max));
  }
  return {};
}

std::uint16_t SocketAddress::port() const noexcept {
  if (len_ == 0) return 0;
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  return 0;
}

std::string SocketAddress::to_string() const {
  if (family() == AF_INET) return host() + ":" + std::to_string(port());
  if (family() == AF_INET6) {
    std::string out = "[";
    out += host();
    out += "]:";
    out += std::to_string(port());
    return out;
  }
  return host();
}

}  // namespace awith
