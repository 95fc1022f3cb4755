// The HTTP client examples of README.md, docs/http.md and awith/http/*.hpp, compiled
// (scripts/snippets.py checks that the documents show exactly this code).
#include <string>

#include "awith/awith.hpp"
#include "awith/http/session.hpp"

using namespace std::chrono_literals;

namespace http_header_example {
using namespace awith;

Task<void> get_json(std::string url) {
  // snippet-begin: session
  co_await async_with(http::ClientSession(http::ClientTimeout{.total = 10s}), [&](http::ClientSession& session) -> Task<void> {
    co_await async_with(session.get(url), [&](http::ClientResponse& resp) -> Task<void> {
      nlohmann::json data = co_await resp.json();
    });
  });
  // snippet-end: session
}

}  // namespace http_header_example

namespace readme_http_example {
namespace http = awith::http;

// snippet-begin: request_session
awith::AsyncContextManager<http::ClientSession> request_session(awith::Duration timeout = 5s) {
  http::ClientSession manager(http::ClientTimeout{.total = timeout});  // async with ClientSession(...)
  http::ClientSession& session = co_await manager.aenter();
  std::exception_ptr error;
  try {
    co_yield session;                                       // yield session
  } catch (...) {
    error = std::current_exception();
  }
  co_await manager.aexit(error);                            // closes every connection and waits
  if (error) std::rethrow_exception(error);
}
// snippet-end: request_session

awith::Task<void> get(std::string url) {
  // snippet-begin: request_session_use
  co_await awith::async_with(request_session(10s), [&](awith::http::ClientSession& session) -> awith::Task<void> {
    co_await awith::async_with(session.get(url), [&](awith::http::ClientResponse& resp) -> awith::Task<void> {
      auto data = co_await resp.json();                      // status: 200 keys: ['args', 'headers', 'origin']
    });
  });
  // snippet-end: request_session_use
}

}  // namespace readme_http_example
