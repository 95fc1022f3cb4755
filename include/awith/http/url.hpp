// Absolute http/https URLs (yarl's URL, reduced to what a client needs): parsing with validation,
// RFC 3986 reference resolution (base URLs, redirects) and query encoding.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace awith::http {

using Params = std::vector<std::pair<std::string, std::string>>;

// Percent-encodes everything but RFC 3986's unreserved characters and `safe`.
std::string quote(std::string_view text, std::string_view safe = "");
// application/x-www-form-urlencoded (Python's urlencode): spaces become '+'.
std::string urlencode(const Params& params);

class URL {
 public:
  URL() = default;
  // Parses an absolute http:// or https:// URL; InvalidURL otherwise. Characters that may not
  // appear in a request target (spaces, non-ASCII) are percent-encoded.
  static URL parse(std::string_view text);

  const std::string& scheme() const noexcept { return scheme_; }
  const std::string& host() const noexcept { return host_; }
  std::uint16_t port() const noexcept { return port_; }  // the explicit or the scheme's default
  const std::string& path() const noexcept { return path_; }    // always starts with '/'
  const std::string& query() const noexcept { return query_; }  // without '?'
  bool is_https() const noexcept { return scheme_ == "https"; }
  bool default_port() const noexcept { return port_ == (is_https() ? 443 : 80); }

  // "host" or "host:port" (brackets around IPv6), as the Host header wants it.
  std::string host_header() const;
  // "scheme://host:port": the key of the connection pool and of same-origin checks.
  std::string origin() const;
  // path?query: the request target of an origin-form request line.
  std::string target() const;
  std::string str() const;

  // Resolves a reference (absolute, scheme-relative, absolute-path or relative) against this URL.
  URL join(std::string_view reference) const;
  // This URL with `params` appended to its query, encoded.
  URL with_params(const Params& params) const;

  friend bool operator==(const URL&, const URL&) = default;

 private:
  std::string scheme_, host_, path_ = "/", query_;
  std::uint16_t port_ = 0;
};

}  // namespace awith::http
