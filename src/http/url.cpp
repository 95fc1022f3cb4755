#include "awith/http/url.hpp"

#include <http_parser.h>

#include <vector>

#include "awith/http/errors.hpp"

namespace awith::http {

namespace {

bool unreserved(unsigned char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

void percent(std::string& out, unsigned char c) {
  static constexpr char hex[] = "0123456789ABCDEF";
  out += '%';
  out += hex[c >> 4];
  out += hex[c & 15];
}

// Encodes what may not appear in a request target (controls, space, non-ASCII, quotes...),
// leaving existing %XX escapes and the reserved delimiters alone.
std::string encode_target_part(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' || c == '^' || c == '`' ||
        c == '{' || c == '|' || c == '}')
      percent(out, c);
    else
      out += static_cast<char>(c);
  }
  return out;
}

// RFC 3986 section 5.2.4.
std::string remove_dot_segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  bool trailing_slash = false;
  while (i <= path.size()) {
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    std::string_view seg = path.substr(i, j - i);
    trailing_slash = false;
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
      trailing_slash = true;
    } else if (seg == ".") {
      trailing_slash = true;
    } else if (!seg.empty() || j == path.size()) {
      out.push_back(seg);
    }
    i = j + 1;
  }
  std::string result;
  for (auto seg : out) {
    result += '/';
    result += seg;
  }
  if (result.empty() || trailing_slash) result += '/';
  return result;
}

}  // namespace

std::string quote(std::string_view text, std::string_view safe) {
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (unreserved(c) || safe.find(static_cast<char>(c)) != std::string_view::npos)
      out += static_cast<char>(c);
    else
      percent(out, c);
  }
  return out;
}

std::string urlencode(const Params& params) {
  std::string out;
  for (auto& [k, v] : params) {
    if (!out.empty()) out += '&';
    for (auto part : {std::string_view(k), std::string_view(v)}) {
      for (unsigned char c : part) {
        if (c == ' ') out += '+';
        else if (unreserved(c)) out += static_cast<char>(c);
        else percent(out, c);
      }
      if (part.data() == k.data()) out += '=';
    }
  }
  return out;
}

URL URL::parse(std::string_view input) {
  std::string text(input);
  std::string encoded = encode_target_part(text);
  http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(encoded.data(), encoded.size(), 0, &u) != 0)
    throw InvalidURL("invalid URL", text);
  auto field = [&](int f) -> std::string {
    if (!(u.field_set & (1 << f))) return {};
    return encoded.substr(u.field_data[f].off, u.field_data[f].len);
  };
  URL url;
  url.scheme_ = field(UF_SCHEMA);
  for (auto& c : url.scheme_) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  if (url.scheme_ != "http" && url.scheme_ != "https")
    throw InvalidURL(url.scheme_.empty() ? "not an absolute URL" : "unsupported scheme '" + url.scheme_ + "'", text);
  if (u.field_set & (1 << UF_USERINFO)) throw InvalidURL("credentials in the URL are not supported", text);
  url.host_ = field(UF_HOST);
  if (url.host_.empty()) throw InvalidURL("no host in the URL", text);
  for (auto& c : url.host_) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  if (u.field_set & (1 << UF_PORT)) {
    if (u.port == 0) throw InvalidURL("port 0", text);
    url.port_ = u.port;
  } else {
    url.port_ = url.is_https() ? 443 : 80;
  }
  url.path_ = field(UF_PATH);
  url.path_ = url.path_.empty() ? std::string(1, '/') : remove_dot_segments(url.path_);
  url.query_ = field(UF_QUERY);
  return url;
}

namespace {
// The host as it appears in a URL authority: IPv6 addresses in brackets. (Appends rather than
// operator+ chains, which trip g++ 12's -Wrestrict false positive.)
void append_host(std::string& out, const std::string& host) {
  bool v6 = host.find(':') != std::string::npos;
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
}
}  // namespace

std::string URL::host_header() const {
  std::string h;
  append_host(h, host_);
  if (!default_port()) {
    h += ':';
    h += std::to_string(port_);
  }
  return h;
}

std::string URL::origin() const {
  std::string h = scheme_;
  h += "://";
  append_host(h, host_);
  h += ':';
  h += std::to_string(port_);
  return h;
}

std::string URL::target() const { return query_.empty() ? path_ : path_ + "?" + query_; }

std::string URL::str() const { return scheme_ + "://" + host_header() + target(); }

URL URL::join(std::string_view ref) const {
  std::string_view r = ref;
  if (auto hash = r.find('#'); hash != std::string_view::npos) r = r.substr(0, hash);
  auto colon = r.find(':');
  auto first_delim = r.find_first_of("/?");
  if (colon != std::string_view::npos && (first_delim == std::string_view::npos || colon < first_delim))
    return parse(r);
  if (r.starts_with("//")) return parse(scheme_ + ":" + std::string(r));
  URL out = *this;
  if (r.empty()) return out;
  std::string_view path = r, query;
  bool has_query = false;
  if (auto q = r.find('?'); q != std::string_view::npos) {
    path = r.substr(0, q);
    query = r.substr(q + 1);
    has_query = true;
  }
  if (path.empty()) {
    out.query_ = encode_target_part(query);
    return out;
  }
  std::string merged;
  if (path.front() == '/') {
    merged = std::string(path);
  } else {
    merged = path_.substr(0, path_.rfind('/') + 1) + std::string(path);
  }
  out.path_ = remove_dot_segments(encode_target_part(merged));
  out.query_ = has_query ? encode_target_part(query) : std::string();
  return out;
}

URL URL::with_params(const Params& params) const {
  if (params.empty()) return *this;
  URL out = *this;
  std::string encoded = urlencode(params);
  out.query_ = out.query_.empty() ? encoded : out.query_ + "&" + encoded;
  return out;
}

}  // namespace awith::http
