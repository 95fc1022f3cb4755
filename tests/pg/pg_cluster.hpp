// The PostgreSQL cluster of the pg tests: scripts/pg_cluster.sh started once per build tree (CTest
// fixture test_pg.cluster_start; a test binary run by hand starts it itself, idempotently, and
// leaves it running for the next run: `scripts/pg_cluster.sh stop /tmp/awith-pg-<hash>` or any
// ctest run of the pg tests removes it), or an existing server named by AWITH_PG_DSN.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace awith::test {

inline std::string pg_cluster_command(const std::string& args) {
  std::string cmd = std::string(AWITH_PG_CLUSTER_SCRIPT) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  int rc = ::pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (rc != 0) throw std::runtime_error(cmd + " failed: " + out);
  return out;
}

inline const std::string& pg_dsn() {
  static const std::string dsn = [] {
    if (const char* env = std::getenv("AWITH_PG_DSN"); env && *env) return std::string(env);
    return pg_cluster_command(std::string("start ") + AWITH_PG_CLUSTER_DIR);
  }();
  return dsn;
}

// The DSN with an application_name, so a test can find its own backends in pg_stat_activity
// while other test processes use the same cluster.
inline std::string pg_dsn_for(const std::string& app) { return pg_dsn() + " application_name=" + app; }

}  // namespace awith::test

// ASSERT_* returns from the function, which a coroutine cannot do: this co_returns instead.
#define AWITH_CO_ASSERT(cond)                  \
  if (!(cond)) {                               \
    ADD_FAILURE() << "assertion failed: " #cond; \
    co_return;                                 \
  }
