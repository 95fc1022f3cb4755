// Loopback sockets for the connecting tests: a black-holed address, a listener that completes
// handshakes without accepting, a refused port, and the process's open fd count.
#pragma once

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "awith/socket_address.hpp"

namespace awith::test {

inline int open_fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (::readdir(d)) ++n;
  ::closedir(d);
  return n;
}

// A TCP socket bound to 127.0.0.1 on a free port.
inline int bound_loopback_socket(sockaddr_in& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  addr = sockaddr_in{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("cannot bind a loopback socket");
  return fd;
}

// A listener that never accepts: the kernel completes connections into its queue.
class Listener {
 public:
  Listener() {
    fd_ = bound_loopback_socket(addr_);
    if (::listen(fd_, 64) != 0) throw std::runtime_error("listen failed");
  }
  ~Listener() { ::close(fd_); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  std::uint16_t port() const { return ntohs(addr_.sin_port); }
  SocketAddress address() const { return SocketAddress(reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_); }

 private:
  int fd_;
  sockaddr_in addr_;
};

// A black-holed address on loopback: a listener with backlog 0 whose accept queue is full (never
// accepting) makes Linux drop further SYNs, so a connect there hangs in SYN-SENT, a deterministic
// local stand-in for an unreachable host.
class BlackHole {
 public:
  BlackHole() {
    fd_ = bound_loopback_socket(addr_);
    if (::listen(fd_, 0) != 0) throw std::runtime_error("listen failed");
    // Fill the accept queue until a connect no longer completes (bounded: 8 attempts).
    for (int i = 0; i < 8; ++i) {
      int c = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      fillers_.push_back(c);
      ::connect(c, reinterpret_cast<sockaddr*>(&addr_), sizeof addr_);
      pollfd p{c, POLLOUT, 0};
      if (::poll(&p, 1, 200) == 0) return;
    }
    throw std::runtime_error("the kernel accepted every connection: cannot make a hanging connect");
  }
  ~BlackHole() {
    for (int c : fillers_) ::close(c);
    ::close(fd_);
  }
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  std::uint16_t port() const { return ntohs(addr_.sin_port); }
  SocketAddress address() const { return SocketAddress(reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_); }

 private:
  int fd_;
  sockaddr_in addr_;
  std::vector<int> fillers_;  // the last one is the connect that hangs
};

// `count` distinct loopback ports nothing listens on (bound together, then closed): connecting
// there is refused.
inline std::vector<SocketAddress> refused_addresses(int count) {
  std::vector<int> fds;
  std::vector<SocketAddress> out;
  for (int i = 0; i < count; ++i) {
    sockaddr_in addr;
    fds.push_back(bound_loopback_socket(addr));
    out.emplace_back(reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  }
  for (int fd : fds) ::close(fd);
  return out;
}

}  // namespace awith::test
