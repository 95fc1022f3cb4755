// A TCP proxy in front of the test cluster, run by the test's own event loop. It forwards bytes
// both ways and, when told, delays the server's replies or cuts the connection in the middle of
// the reply to a COMMIT: the moments between a statement's effect on the server and its reply
// reaching the client, which a client must survive without lying about the outcome.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <regex>
#include <string>

#include "awith/awith.hpp"
#include "awith/server.hpp"
#include "awith/stream.hpp"

namespace awith::test {

class PgProxy {
 public:
  // Every server-to-client chunk is held this long before it is forwarded (changeable at any time).
  Duration reply_delay{};
  // After a client sent a statement containing "COMMIT": forward the server's reply up to the end
  // of its first CommandComplete message (the complete result of the statement sent with COMMIT),
  // then close both sides.
  bool cut_after_commit_id = false;
  int cuts = 0;       // connections cut so far
  int requests = 0;   // client-to-server chunks: one per round trip of a client that awaits replies

  // Starts listening on 127.0.0.1 (any free port) in front of the server `dsn` names.
  Task<void> start(const std::string& dsn) {
    std::smatch m;
    if (!std::regex_search(dsn, m, std::regex("port=([0-9]+)"))) throw std::runtime_error("no port in " + dsn);
    upstream_ = static_cast<std::uint16_t>(std::stoi(m[1]));
    dsn_ = std::regex_replace(dsn, std::regex("port=[0-9]+"), "port=PORT");
    server_.emplace(co_await start_server([this](StreamReader r, StreamWriter w) { return relay(std::move(r), std::move(w)); },
                                          "127.0.0.1", 0));
    port_ = server_->sockets().at(0).sockname.port();
    dsn_ = std::regex_replace(dsn_, std::regex("port=PORT"), "port=" + std::to_string(port_));
  }
  Task<void> stop() {
    if (!server_) co_return;
    server_->close();
    server_->abort_clients();
    co_await server_->wait_closed();
  }
  // The proxied DSN, with an application_name.
  std::string dsn(const std::string& app) const { return dsn_ + " application_name=" + app; }

 private:
  Task<void> relay(StreamReader client_r, StreamWriter client_w) {
    StreamPair upstream = co_await open_connection("127.0.0.1", upstream_);
    StreamReader& server_r = upstream.reader;
    StreamWriter& server_w = upstream.writer;
    bool commit_sent = false;
    co_await async_with(TaskGroup(), [&](TaskGroup& tg) -> Task<void> {
      tg.create_task([&]() -> Task<void> {
        for (;;) {
          std::string chunk = co_await client_r.read(65536);
          if (chunk.empty()) break;
          ++requests;
          if (chunk.find("COMMIT") != std::string::npos) commit_sent = true;
          if (server_w.is_closing()) break;  // cut: what the client still sends goes nowhere
          server_w.write(chunk);
          co_await server_w.drain();
        }
        server_w.close();
      });
      std::string pending;
      for (;;) {
        std::string chunk = co_await server_r.read(65536);
        if (chunk.empty()) break;
        if (reply_delay > Duration::zero()) co_await sleep(reply_delay);
        if (!(cut_after_commit_id && commit_sent)) {
          client_w.write(chunk);
          co_await client_w.drain();
          continue;
        }
        pending += chunk;
        if (auto end = first_command_end(pending)) {
          client_w.write(pending.substr(0, *end));
          co_await client_w.drain();
          ++cuts;
          break;
        }
      }
      // Closing both sides ends the other pump too: the client sees EOF and closes its socket.
      client_w.close();
      server_w.close();
    });
  }

  // The end offset of the first complete CommandComplete ('C') in a run of backend messages.
  static std::optional<std::size_t> first_command_end(const std::string& b) {
    std::size_t i = 0;
    while (i + 5 <= b.size()) {
      std::uint32_t len;
      std::memcpy(&len, b.data() + i + 1, 4);
      std::size_t end = i + 1 + ntohl(len);
      if (end > b.size()) return std::nullopt;
      if (b[i] == 'C') return end;
      i = end;
    }
    return std::nullopt;
  }

  std::optional<Server> server_;
  std::uint16_t upstream_ = 0;
  std::uint16_t port_ = 0;
  std::string dsn_;
};

}  // namespace awith::test
