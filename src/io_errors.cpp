// OSError and its subclasses from an errno, and the stream errors' messages.
#include "awith/io_errors.hpp"

#include <cstring>
#include <string>

#include "awith/stream.hpp"

namespace awith {

std::exception_ptr make_os_error(int err, const std::string& what) {
  return os_error_with_message(err, what + ": " + std::strerror(err));
}

std::exception_ptr os_error_with_message(int err, const std::string& msg) {
  switch (err) {
    case ECONNREFUSED:
      return std::make_exception_ptr(ConnectionRefusedError(err, msg));
    case ECONNRESET:
      return std::make_exception_ptr(ConnectionResetError(err, msg));
    case ECONNABORTED:
      return std::make_exception_ptr(ConnectionAbortedError(err, msg));
    case EPIPE:
    case ESHUTDOWN:
      return std::make_exception_ptr(BrokenPipeError(err, msg));
    default:
      return std::make_exception_ptr(OSError(err, msg));
  }
}

void throw_os_error(int err, const std::string& what) { std::rethrow_exception(make_os_error(err, what)); }

IncompleteReadError::IncompleteReadError(std::string partial, std::optional<std::size_t> expected)
    : std::runtime_error(std::to_string(partial.size()) + " bytes read on a total of " +
                         (expected ? std::to_string(*expected) : std::string("undefined")) + " expected bytes"),
      partial_(std::move(partial)),
      expected_(expected) {}

}  // namespace awith
