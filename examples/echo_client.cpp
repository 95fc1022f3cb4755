// Mirrors asyncio's tcp_echo_client (open_connection, write, drain, readline, close, wait_closed),
// the client of the start_server echo example: sends one line to echo_server and prints the reply.
//
//   echo_client [PORT] [MESSAGE]     (defaults: 8888, "Hello World!")
#include <cstdio>
#include <cstdlib>
#include <string>

#include "awith/awith.hpp"
#include "awith/stream.hpp"

using namespace awith;

namespace {

Task<int> tcp_echo_client(std::uint16_t port, std::string message) {
  auto [reader, writer] = co_await open_connection("127.0.0.1", port);
  std::printf("Send: %s\n", message.c_str());
  writer.write(message + "\n");
  co_await writer.drain();
  std::string data = co_await reader.readline();
  std::printf("Received: %s", data.c_str());
  std::printf("Close the connection\n");
  writer.close();
  co_await writer.wait_closed();
  co_return data == message + "\n" ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  long port = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 8888;
  std::string message = argc > 2 ? argv[2] : "Hello World!";
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "echo_client: bad port\n");
    return 2;
  }
  try {
    return run(tcp_echo_client(static_cast<std::uint16_t>(port), message));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
  }
}
