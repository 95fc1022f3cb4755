// Mirrors the Python request_session program (contextlib.asynccontextmanager around
// aiohttp.ClientSession), line for line: a generator-based manager yields an http::ClientSession;
// the body GETs a URL and prints the status and the first three JSON keys.
//
//   request_session URL        (the tour passes a local httpbin-style /get: tests/support/httpbin.py)
#include <iostream>
#include <string>

#include "awith/awith.hpp"
#include "awith/http/session.hpp"

using namespace awith;
using namespace std::chrono_literals;

// @asynccontextmanager async def request_session(timeout: float = 5.0):
AsyncContextManager<http::ClientSession> request_session(Duration timeout = 5s) {
  // enter: create the resource (async with aiohttp.ClientSession(timeout=ClientTimeout(total=...)))
  http::ClientSession manager(http::ClientTimeout{.total = timeout});
  http::ClientSession& session = co_await manager.aenter();
  std::exception_ptr error;
  try {
    co_yield session;  // use: hand the resource to the with-body
  } catch (...) {
    error = std::current_exception();  // finally: C++ cannot co_await inside a catch block
  }
  // exit: the session's own exit does the cleanup (closes its connections and waits for them)
  co_await manager.aexit(error);
  if (error) std::rethrow_exception(error);
}

// list(data.keys())[:3] printed as Python prints a list of str.
std::string first_keys(const nlohmann::json& data, std::size_t n) {
  std::string out = "[";
  std::size_t i = 0;
  for (auto& [key, value] : data.items()) {
    if (i == n) break;
    out += (i++ ? ", '" : "'") + key + "'";
  }
  return out + "]";
}

Task<void> amain(std::string url) {
  co_await async_with(request_session(10s), [&](http::ClientSession& session) -> Task<void> {
    co_await async_with(session.get(url), [&](http::ClientResponse& resp) -> Task<void> {
      nlohmann::json data = co_await resp.json();
      std::cout << "status: " << resp.status() << " keys: " << first_keys(data, 3) << std::endl;
    });
  });
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " URL   (e.g. http://127.0.0.1:8080/get)\n";
    return 2;
  }
  run(amain(argv[1]));
}
