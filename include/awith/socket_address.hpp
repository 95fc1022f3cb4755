// A socket address (IPv4, IPv6 or Unix-domain), as get_extra_info("peername"/"sockname") returns.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

namespace awith {

class SocketAddress {
 public:
  SocketAddress() = default;
  SocketAddress(const sockaddr* sa, socklen_t len) noexcept;
  // The local / remote address of a socket (getsockname / getpeername); empty on failure.
  static SocketAddress local_of(int fd) noexcept;
  static SocketAddress peer_of(int fd) noexcept;
  // A numeric IPv4 or IPv6 address ("127.0.0.1", "::1") with `port`; nullopt for anything else
  // (a name, an address with a zone index such as "fe80::1%eth0": those take the resolver).
  static std::optional<SocketAddress> from_numeric(const std::string& host, std::uint16_t port) noexcept;

  int family() const noexcept { return storage_.ss_family; }
  bool empty() const noexcept { return len_ == 0; }
  // Numeric host ("127.0.0.1", "::1") or the path of a Unix-domain socket.
  std::string host() const;
  std::uint16_t port() const noexcept;  // 0 for Unix-domain sockets
  // "127.0.0.1:8888", "[::1]:8888" or the path.
  std::string to_string() const;
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return len_; }
  friend bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept;

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

}  // namespace awith
