// The error types of the io layer, named after Python's OSError family so that asyncio code ports
// one to one: OSError carries errno; ConnectionError and its subclasses are raised for the errno
// values Python maps to them.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace awith {

// Any failed system call of the io layer (Python's OSError). code().value() is the errno; what()
// is the message as given (std::system_error would append the errno's text, which the message
// already carries, or "Success" for an errno of 0).
class OSError : public std::system_error {
 public:
  OSError(int err, const std::string& what)
      : std::system_error(err, std::generic_category(), what), message_(what) {}
  int errno_value() const noexcept { return code().value(); }
  const char* what() const noexcept override { return message_.what(); }

 private:
  std::runtime_error message_;  // copies share the text and never throw, as an exception's must
};
class ConnectionError : public OSError {
 public:
  using OSError::OSError;
};
class ConnectionRefusedError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};
class ConnectionResetError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
  explicit ConnectionResetError(const std::string& what) : ConnectionError(ECONNRESET, what) {}
};
class ConnectionAbortedError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};
class BrokenPipeError : public ConnectionError {
 public:
  using ConnectionError::ConnectionError;
};
// Name resolution failed (Python's socket.gaierror); code is the EAI_* value, not an errno.
class GaiError : public OSError {
 public:
  GaiError(int eai, const std::string& what) : OSError(0, what), eai_(eai) {}
  int eai() const noexcept { return eai_; }

 private:
  int eai_;
};

// Throws the OSError subclass Python would raise for `err`, with "what: strerror" as message.
[[noreturn]] void throw_os_error(int err, const std::string& what);
// The same as an exception_ptr (to store a connection's fatal error).
std::exception_ptr make_os_error(int err, const std::string& what);
// The OSError subclass for `err` with `message` as it is (nothing appended).
std::exception_ptr os_error_with_message(int err, const std::string& message);

}  // namespace awith
