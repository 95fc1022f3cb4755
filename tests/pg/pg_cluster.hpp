// The PostgreSQL clusters of the pg tests (scripts/pg_cluster.sh), and their PgBouncers
// (scripts/pgbouncer.sh, PgBouncerTest below).
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

// Runs a script with args and returns what it printed on stdout, the DSN for start. Its stderr
// (pg_ctl's diagnostics, a retried port) goes to the test's log, never into the DSN.
inline std::string script_command(const std::string& script, const std::string& args) {
  const std::string cmd = script + " " + args;
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

inline std::string pg_cluster_command(const std::string& args) { return script_command(AWITH_PG_CLUSTER_SCRIPT, args); }

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

// base-<test name>-<hash>, the directory of the running test's own server: the name is cut short
// because a server's unix socket path must stay under 108 bytes.
inline std::string test_dir(const std::string& base) {
  const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  char hash[17];
  std::snprintf(hash, sizeof hash, "%08zx", std::hash<std::string>{}(name) & 0xffffffffu);
  return base + "-" + name.substr(0, 24) + "-" + hash;
}

// A cluster of the test's own, in AWITH_PG_CLUSTER_DIR-<test name>-<hash>.
class PgPrivateCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_dir(AWITH_PG_CLUSTER_DIR);
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

// A PgBouncer of the test's own (scripts/pgbouncer.sh: pool_mode = transaction, 2 server
// connections) in front of the shared cluster, in AWITH_PGBOUNCER_DIR-<test name>-<hash>: which
// server connection a transaction gets depends on every client of the bouncer, so tests running
// at the same time must not share one. Stopped in TearDown; a test process killed meanwhile leaves
// it to the CTest fixture cleanup test_pg.bouncer_stop.
class PgBouncerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_dir(AWITH_PGBOUNCER_DIR);
    std::string backend = pg_dsn();
    std::string quoted = "'";
    for (char ch : backend) quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    quoted += "'";
    dsn_ = script_command(AWITH_PGBOUNCER_SCRIPT, "start " + dir_ + " " + quoted);
    if (dsn_.rfind("host=", 0) != 0 || dsn_.find('\n') != std::string::npos)
      throw std::runtime_error("pgbouncer.sh start " + dir_ + " printed no DSN: \"" + dsn_ + "\"");
  }
  void TearDown() override {
    if (!dir_.empty()) script_command(AWITH_PGBOUNCER_SCRIPT, "stop " + dir_);
  }

  // The bouncer's DSN, through which the test's connections run.
  const std::string& bouncer_dsn() const { return dsn_; }

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
