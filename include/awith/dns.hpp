// Name resolution (asyncio's loop.getaddrinfo) and the order connecting tries addresses in: the
// one path open_connection (and so the HTTP client) and PostgreSQL connections resolve through.
// snippet: tests/snippets/headers.cpp#resolve
//
//   std::vector<SocketAddress> addresses = co_await awith::resolve("example.org", 443);
//
// A name goes to getaddrinfo on the loop's default executor: getaddrinfo honours /etc/hosts,
// nsswitch.conf and NSS modules exactly as every other program on the machine does, and it
// blocks, so it must not run on the loop. A numeric address is parsed in place, without a thread.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "awith/io_errors.hpp"
#include "awith/socket_address.hpp"
#include "awith/task.hpp"

namespace awith {

// The addresses of `host` for a stream socket, each with `port`, in the resolver's order without
// duplicates. family: AF_UNSPEC (any), AF_INET or AF_INET6. Raises GaiError naming the host when
// it does not resolve. Cancelling stops the wait at once; the lookup's result is dropped when it
// arrives.
Task<std::vector<SocketAddress>> resolve(std::string host, std::uint16_t port, int family = AF_UNSPEC);

// The order to try addresses in (RFC 8305, section 4, as asyncio's `interleave`): grouped by
// family in the order the families first appear, first_family_count addresses of the first family
// lead, then the families alternate one address at a time, so a family that does not work costs
// one attempt at a time rather than all of its addresses. 0 keeps the given order.
std::vector<SocketAddress> interleave_by_family(std::vector<SocketAddress> addresses,
                                                std::size_t first_family_count = 1);

}  // namespace awith
