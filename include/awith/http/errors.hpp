// The HTTP client's errors, named after aiohttp's. Every one carries the URL of the request that
// failed (url(), also part of what()), so a log line says which request broke and how.
//
//   ClientError
//   ├── InvalidURL                     the URL cannot be requested (bad syntax, unsupported scheme)
//   ├── ClientConnectionError
//   │   ├── ClientConnectorError       connecting failed (errno_value(): the OS error)
//   │   ├── ClientSSLError             TLS handshake or certificate verification failed
//   │   ├── ServerDisconnectedError    the server closed the connection before the response ended
//   │   └── ClientTimeoutError         a ClientTimeout phase expired (phase() says which)
//   ├── MalformedResponseError         the status line or headers are not valid HTTP/1.x
//   │   └── HeadersTooLargeError       the header section exceeds the limit
//   ├── ClientPayloadError             the body is broken: truncated, bad chunking, bad gzip
//   │   └── PayloadTooLargeError       the body exceeds the limit
//   ├── InvalidJSONError               json(): the body is not valid JSON
//   └── ClientResponseError            raise_for_status(): status() >= 400
//       ├── ContentTypeError           json() on a response that is not JSON
//       └── TooManyRedirects           more than max_redirects redirects
#pragma once

#include <stdexcept>
#include <string>

namespace awith::http {

class ClientError : public std::runtime_error {
 public:
  ClientError(const std::string& message, std::string url)
      : std::runtime_error(url.empty() ? message : message + " (" + url + ")"), url_(std::move(url)) {}
  const std::string& url() const noexcept { return url_; }

 private:
  std::string url_;
};

class InvalidURL : public ClientError {
 public:
  using ClientError::ClientError;
};

class ClientConnectionError : public ClientError {
 public:
  using ClientError::ClientError;
};

class ClientConnectorError : public ClientConnectionError {
 public:
  ClientConnectorError(const std::string& message, std::string url, int err)
      : ClientConnectionError(message, std::move(url)), errno_(err) {}
  int errno_value() const noexcept { return errno_; }

 private:
  int errno_;
};

class ClientSSLError : public ClientConnectionError {
 public:
  using ClientConnectionError::ClientConnectionError;
};

class ServerDisconnectedError : public ClientConnectionError {
 public:
  using ClientConnectionError::ClientConnectionError;
};

// Which ClientTimeout bound expired.
enum class TimeoutPhase { total, connect, sock_connect, sock_read };
const char* to_string(TimeoutPhase phase) noexcept;

class ClientTimeoutError : public ClientConnectionError {
 public:
  ClientTimeoutError(TimeoutPhase phase, std::string url)
      : ClientConnectionError(std::string("timeout (") + to_string(phase) + ")", std::move(url)), phase_(phase) {}
  TimeoutPhase phase() const noexcept { return phase_; }

 private:
  TimeoutPhase phase_;
};

class MalformedResponseError : public ClientError {
 public:
  using ClientError::ClientError;
};

class HeadersTooLargeError : public MalformedResponseError {
 public:
  using MalformedResponseError::MalformedResponseError;
};

class ClientPayloadError : public ClientError {
 public:
  using ClientError::ClientError;
};

class PayloadTooLargeError : public ClientPayloadError {
 public:
  using ClientPayloadError::ClientPayloadError;
};

class InvalidJSONError : public ClientError {
 public:
  using ClientError::ClientError;
};

class ClientResponseError : public ClientError {
 public:
  ClientResponseError(int status, std::string message, std::string url)
      : ClientError(std::to_string(status) + ", message='" + message + "'", std::move(url)),
        status_(status),
        message_(std::move(message)) {}
  int status() const noexcept { return status_; }
  const std::string& message() const noexcept { return message_; }

 private:
  int status_;
  std::string message_;
};

class ContentTypeError : public ClientResponseError {
 public:
  using ClientResponseError::ClientResponseError;
};

class TooManyRedirects : public ClientResponseError {
 public:
  using ClientResponseError::ClientResponseError;
};

}  // namespace awith::http
