// Shared helpers of the HTTP client tests.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <string>

#include "awith/awith.hpp"
#include "awith/http/session.hpp"
#include "awith/server.hpp"
#include "http/http_servers.hpp"

namespace awith::test {

// Runs a test body on a fresh loop, bounded in time: a hang fails the test instead of CTest's
// timeout killing it.
inline void run_http(std::function<Task<void>()> body, Duration bound = std::chrono::seconds(30)) {
  run([&]() -> Task<void> { co_await wait_for(body(), bound); }());
}

// Whether the pool holds no connection in use (every open one is idle).
inline bool pool_is_clean(const http::ClientSession& s) { return s.open_connections() == s.idle_connections(); }

// What an exception is, for EXPECT messages.
inline std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (const CancelledError&) {
    return "CancelledError";
  }
}

// An in-process "server" that answers every request on a connection with canned bytes: for
// responses no real server would send. close_after: close the connection after each answer.
inline Task<Server> raw_server(std::string response, bool close_after = true) {
  // Built before the co_await (g++ 12 double-destroys a capturing lambda inside one).
  ConnectionHandler handler = [response, close_after](StreamReader r, StreamWriter w) -> Task<void> {
        for (;;) {
          std::string head;
          try {
            head = co_await r.readuntil("\r\n\r\n");
          } catch (const std::exception&) {
            break;
          }
          if (auto cl = head.find("Content-Length: "); cl != std::string::npos) {
            std::size_t n = std::stoul(head.substr(cl + 16));
            if (n) co_await r.readexactly(n);
          }
          w.write(response);
          co_await w.drain();
          if (close_after) break;
        }
        w.close();
      };
  co_return co_await start_server(std::move(handler), "127.0.0.1", 0);
}
inline std::string url_of(const Server& s, const std::string& path = "/") {
  return "http://127.0.0.1:" + std::to_string(s.sockets().at(0).sockname.port()) + path;
}

// The value of header `name` in a request head as the client sends it ("" if absent).
inline std::string header_value(const std::string& head, const std::string& name) {
  std::size_t at = head.find("\r\n" + name + ": ");
  if (at == std::string::npos) return {};
  at += name.size() + 4;
  return head.substr(at, head.find("\r\n", at) - at);
}

// Reads the next request of a keep-alive connection for a test server: its head, with its body
// (by Content-Length) read past, or nullopt when no request starts within `idle` (nullopt: no
// bound). A connection that ends raises, as readuntil does.
inline Task<std::optional<std::string>> read_request(StreamReader& r, std::optional<Duration> idle) {
  std::string head;
  bool expired = false;
  try {
    head = co_await wait_for(r.readuntil("\r\n\r\n"), idle);
  } catch (const TimeoutError&) {
    expired = true;
  }
  if (expired) co_return std::nullopt;
  std::string length = header_value(head, "Content-Length");
  if (!length.empty() && length != "0") co_await r.readexactly(std::stol(length));
  co_return head;
}

}  // namespace awith::test
