// The real peers of the HTTP client tests, started on demand by the test binary itself (once per
// process) on free 127.0.0.1 ports: an aiohttp application (servers/aiohttp_server.py, Debian's
// /usr/bin/python3) and nginx (private prefix: static JSON, gzip, keep-alive). Each child gets
// PR_SET_PDEATHSIG and a `timeout` bound, so a crashed test never leaves a server behind.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace awith::test {

// A child process (argv[0] searched in PATH), killed with SIGTERM when this object dies.
class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> argv, bool capture_stdout) {
    int fds[2] = {-1, -1};
    if (capture_stdout && ::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (capture_stdout) ::dup2(fds[1], 1);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    if (capture_stdout) {
      ::close(fds[1]);
      out_ = fds[0];
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (out_ >= 0) ::close(out_);
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  bool alive() { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  // The first line the child writes, within `timeout`; "" if none.
  std::string read_line(std::chrono::milliseconds timeout) {
    std::string line;
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char c;
      if (::read(out_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line += c;
    }
    return {};
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

inline bool port_accepts(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

inline std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// The aiohttp peer's port (started on first use).
inline std::uint16_t aiohttp_port() {
  struct Server {
    ChildProcess child{{"timeout", "600", "/usr/bin/python3", AWITH_HTTP_AIOHTTP_SERVER, "--lifetime", "590"}, true};
    std::uint16_t port = 0;
    Server() {
      std::string line = child.read_line(std::chrono::seconds(20));
      if (!line.starts_with("port=")) throw std::runtime_error("the aiohttp test server did not start");
      port = static_cast<std::uint16_t>(std::stoi(line.substr(5)));
    }
  };
  static Server server;
  return server.port;
}

// The nginx peer: /data.json (static JSON, gzip'ed for clients that accept it), keep-alive; over
// HTTP on `port` and over HTTPS on `tls_port` (certificate for localhost / 127.0.0.1) and on
// `wrong_name_port` (certificate for wrong.example), both signed by a throwaway CA (`ca_file`).
struct Nginx {
  std::filesystem::path dir;
  std::uint16_t port = 0;
  std::uint16_t tls_port = 0;
  std::uint16_t wrong_name_port = 0;
  std::string ca_file;
  std::string json;
};

// A throwaway CA and two server certificates in `dir` (openssl, bounded in time).
inline void make_test_certificates(const std::filesystem::path& dir) {
  std::ofstream(dir / "make_certs.sh") << R"sh(set -e
cd "$(dirname "$0")"
o() { timeout 30 openssl "$@" 2>/dev/null; }
key() { o genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
key ca.key
o req -x509 -new -key ca.key -sha256 -days 30 -subj "/O=awith http test/CN=awith http test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
leaf() {  # NAME SAN
  key "$1.key"
  o req -new -key "$1.key" -subj "/O=awith http test/CN=$1" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" >"$1.ext"
  o x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 30 -extfile "$1.ext" -out "$1.pem"
}
leaf localhost DNS:localhost,IP:127.0.0.1
leaf wrong DNS:wrong.example
chmod 644 ./*.pem ./*.key
)sh";
  std::string command = "bash " + (dir / "make_certs.sh").string();
  if (std::system(command.c_str()) != 0) throw std::runtime_error("generating the test certificates failed");
}

inline const Nginx& nginx() {
  struct Server {
    Nginx info;
    std::unique_ptr<ChildProcess> child;
    Server() {
      char tmpl[] = "/tmp/awith-http-nginx.XXXXXX";
      if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
      info.dir = tmpl;
      std::filesystem::permissions(info.dir, std::filesystem::perms(0755));
      std::filesystem::create_directories(info.dir / "www");
      std::filesystem::create_directories(info.dir / "tmp");
      // Big enough for gzip to matter, with a recognisable structure.
      info.json = "{\"name\": \"awith\", \"items\": [";
      for (int i = 0; i < 200; ++i) info.json += (i ? ", " : "") + std::to_string(i);
      info.json += "], \"ok\": true}\n";
      std::ofstream(info.dir / "www/data.json") << info.json;
      std::filesystem::permissions(info.dir / "www", std::filesystem::perms(0755));
      std::filesystem::permissions(info.dir / "www/data.json", std::filesystem::perms(0644));
      make_test_certificates(info.dir);
      info.ca_file = (info.dir / "ca.pem").string();
      std::string nginx_bin = std::filesystem::exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
      for (int attempt = 0; attempt < 5 && !child; ++attempt) {
        info.port = free_port();
        info.tls_port = free_port();
        info.wrong_name_port = free_port();
        std::string d = info.dir.string();
        auto tls_server = [&](std::uint16_t port, const std::string& name) {
          return "  server { listen 127.0.0.1:" + std::to_string(port) + " ssl; root " + d + "/www; ssl_certificate " + d +
                 "/" + name + ".pem; ssl_certificate_key " + d + "/" + name + ".key; }\n";
        };
        std::ofstream(info.dir / "nginx.conf")
            << "worker_processes 1;\npid " << d << "/nginx.pid;\nerror_log " << d << "/error.log;\n"
            << "events { worker_connections 256; }\nhttp {\n  access_log off;\n"
            << "  client_body_temp_path " << d << "/tmp; proxy_temp_path " << d << "/tmp;\n"
            << "  fastcgi_temp_path " << d << "/tmp; uwsgi_temp_path " << d << "/tmp; scgi_temp_path " << d
            << "/tmp;\n  types { application/json json; }\n  default_type application/json;\n"
            << "  keepalive_timeout 65s; keepalive_requests 100000;\n"
            << "  gzip on; gzip_min_length 0; gzip_types application/json;\n"
            << "  server { listen 127.0.0.1:" << info.port << "; root " << d << "/www; }\n"
            << tls_server(info.tls_port, "localhost") << tls_server(info.wrong_name_port, "wrong") << "}\n";
        auto c = std::make_unique<ChildProcess>(
            std::vector<std::string>{"timeout", "600", nginx_bin, "-p", d, "-c", d + "/nginx.conf", "-g", "daemon off;"},
            false);
        // nginx writes its pid file only after binding every listen socket: that (not a port
        // that accepts, which could be another test's nginx) says this one is serving.
        for (int i = 0; i < 100 && c->alive(); ++i) {
          if (std::filesystem::exists(info.dir / "nginx.pid") && port_accepts(info.port) &&
              port_accepts(info.tls_port) && port_accepts(info.wrong_name_port)) {
            child = std::move(c);
            break;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      if (!child) throw std::runtime_error("nginx did not start");
    }
    ~Server() {
      child.reset();
      std::error_code ec;
      std::filesystem::remove_all(info.dir, ec);
    }
  };
  static Server server;
  return server.info;
}

}  // namespace awith::test
