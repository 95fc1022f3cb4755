// A socket address (IPv4, IPv6 or Unix-domain), as get_extra_info("peername"/"sockname") returns.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace awith {

class SocketAddress {
 public:
  SocketAddress() = default;
  SocketAddress(const sockaddr* sa, socklen_t len) noexcept;
  // The local / remote address of a socket (getsockname / getpeername); empty on failure.
  static SocketAddress local_of(int fd) noexcept;
  static SocketAddress peer_of(int fd) noexcept;

  int family() const noexcept { return storage_.ss_family; }
  bool empty() const noexcept { return len_ == 0; }
  // Numeric host ("127.0.0.1", "::1") or the path of a Unix-domain socket.
  std::string host() const;
  std::uint16_t port() const noexcept;  // 0 for Unix-domain sockets
  // "127.0.0.1:8888", "[::1]:8888" or the path.
  std::string to_string() const;
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t size() const noexcept { return len_; }

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

}  // namespace awith
