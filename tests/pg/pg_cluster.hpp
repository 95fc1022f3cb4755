// The PostgreSQL clusters of the pg tests (scripts/pg_cluster.sh).
//
// The shared cluster: started once per build tree (CTest fixture test_pg.cluster_start; a test
// binary run by hand starts it itself, idempotently, and leaves it running for the next run:
// `scripts/pg_cluster.sh stop /tmp/awith-pg-<hash>` or any ctest run of the pg tests removes it),
// or an existing server named by AWITH_PG_DSN.
//
// A private cluster (PgPrivateCluster) for a test that restarts its server: started in SetUp and
// stopped in TearDown, which GoogleTest runs on every path out of the test. A test process killed
// meanwhile (timeout, crash) leaves it to the CTest fixture cleanup test_pg.cluster_stop, which
// stops every cluster whose directory starts with AWITH_PG_CLUSTER_DIR.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>

namespace awith::test {

// Runs scripts/pg_cluster.sh with args and returns what it printed on stdout, the DSN for start.
// Its stderr (pg_ctl's diagnostics, a retried port) goes to the test's log, never into the DSN.
inline std::string pg_cluster_command(const std::string& args) {
  const std::string cmd = std::string(AWITH_PG_CLUSTER_SCRIPT) + " " + args;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (status != 0) {
    const std::string how = WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                              : "wait status " + std::to_string(status);
    throw std::runtime_error(cmd + " failed (" + how + "; its stderr is in the test's log)");
  }
  return out;
}

// Starts the cluster in dir and returns its DSN, checked to be the one line the script prints.
inline std::string pg_cluster_start(const std::string& dir) {
  std::string dsn = pg_cluster_command("start " + dir);
  if (dsn.rfind("host=", 0) != 0 || dsn.find('\n') != std::string::npos)
    throw std::runtime_error("pg_cluster.sh start " + dir + " printed no DSN: \"" + dsn + "\"");
  return dsn;
}

inline const std::string& pg_dsn() {
  static const std::string dsn = [] {
    if (const char* env = std::getenv("AWITH_PG_DSN"); env && *env) return std::string(env);
    return pg_cluster_start(AWITH_PG_CLUSTER_DIR);
  }();
  return dsn;
}

// The DSN with an application_name, so a test can find its own backends in pg_stat_activity
// while other test processes use the same cluster.
inline std::string pg_dsn_for(const std::string& app) { return pg_dsn() + " application_name=" + app; }

// A cluster of the test's own, in AWITH_PG_CLUSTER_DIR-<test name>-<hash>: the name is cut short
// because the server's unix socket path must stay under 108 bytes.
class PgPrivateCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    char hash[17];
    std::snprintf(hash, sizeof hash, "%08zx", std::hash<std::string>{}(name) & 0xffffffffu);
    dir_ = std::string(AWITH_PG_CLUSTER_DIR) + "-" + name.substr(0, 24) + "-" + hash;
    dsn_ = pg_cluster_start(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) pg_cluster_command("stop " + dir_);
  }

  const std::string& dsn() const { return dsn_; }
  void restart_server() const { pg_cluster_command("restart " + dir_); }

 private:
  std::string dir_;
  std::string dsn_;
};

}  // namespace awith::test

// ASSERT_* returns from the function, which a coroutine cannot do: this co_returns instead.
#define AWITH_CO_ASSERT(cond)                  \
  if (!(cond)) {                               \
    ADD_FAILURE() << "assertion failed: " #cond; \
    co_return;                                 \
  }
