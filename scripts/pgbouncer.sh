#!/usr/bin/env bash
# A throwaway PgBouncer in transaction pooling mode in front of a test cluster (pg_cluster.sh), for
# the tests of awith::pg behind a pooler.
#
#   pgbouncer.sh start DIR BACKEND_DSN  writes DIR/pgbouncer.ini (pool_mode = transaction,
#                                       default_pool_size = 2, trust authentication) for the server
#                                       of BACKEND_DSN ("host=.. port=.. user=.. dbname=..", as
#                                       pg_cluster.sh prints it) and starts pgbouncer on
#                                       127.0.0.1:<free port>; prints the DSN to connect through it.
#                                       Idempotent: a bouncer running in DIR just prints its DSN.
#   pgbouncer.sh dsn DIR                prints the DSN of the bouncer running in DIR
#   pgbouncer.sh stop DIR               stops the bouncer and removes DIR
#   pgbouncer.sh stop-all DIR           stops DIR and every bouncer in DIR-* (what the tests'
#                                       private bouncers are called), for a test run killed midway
#
# Only the DSN goes to stdout; diagnostics go to stderr. Clients connect as user postgres to the
# database postgres, which the bouncer maps to BACKEND_DSN. Ports are chosen under pg_cluster.sh's
# machine-wide port lock, so a bouncer and clusters started at the same time never collide.
# pgbouncer refuses to run as root: as root it runs as the postgres user (runuser).
set -euo pipefail

usage() { echo "usage: $0 start DIR BACKEND_DSN | dsn DIR | stop DIR | stop-all DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
case $dir in /*) ;; *) dir=$(pwd)/$dir ;; esac

bouncer=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
[ -x "$bouncer" ] || { echo "pgbouncer.sh: pgbouncer not found (run scripts/setup.sh)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# Whether process $1 is alive: an exited daemon stays a zombie until init reaps it, which may take
# a second here.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]
}
# The pid in DIR's pid file, if that process is a live pgbouncer (a stale file's pid may have been
# reused).
pid() {
  local p
  p=$(cat "${1:-$dir}/pgbouncer.pid" 2>/dev/null || true)
  if [ -n "$p" ] && alive "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = pgbouncer ]; then echo "$p"; fi
}
running() { [ -n "$(pid)" ]; }
dsn() { echo "host=127.0.0.1 port=$(cat "$dir/port") user=postgres dbname=postgres"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT_LOCK=${PG_PORT_LOCK:-/tmp/awith-pg-port.lock}

start() {
  [ $# -eq 1 ] || usage
  local backend=$1
  mkdir -p "$dir"
  # Concurrent test processes may all ask for the bouncer: the first one starts it.
  exec 9>"$dir/.lock"
  flock -w 120 9
  if running; then dsn; return; fi
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  echo '"postgres" ""' >"$dir/userlist.txt"
  : >>"$PORT_LOCK" 2>/dev/null || true
  exec 8<"$PORT_LOCK"
  flock -w 120 8 || { echo "pgbouncer.sh: waited 120 s for $PORT_LOCK" >&2; exit 1; }
  local port=${PGBOUNCER_PORT:-26432} tries=0
  while :; do
    while ! port_free "$port"; do port=$((port + 1)); done
    cat >"$dir/pgbouncer.ini" <<EOF
[databases]
postgres = $backend

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 200
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
EOF
    rm -f "$dir/pgbouncer.pid"
    # -d returns once the listening socket is open (or the start failed).
    if as_pg "$bouncer" -d -q "$dir/pgbouncer.ini" 8>&- 9>&-; then
      local i
      for i in $(seq 50); do
        running && ! port_free "$port" && break
        sleep 0.1
      done
      running && ! port_free "$port" && break
    fi
    tries=$((tries + 1))
    [ $tries -lt 5 ] || { tail -20 "$dir/pgbouncer.log" >&2; exit 1; }
    echo "pgbouncer.sh: pgbouncer did not start on port $port; trying the next one" >&2
    port=$((port + 1))
  done
  echo "$port" >"$dir/port"
  flock -u 8
  dsn
}

stop() {
  local p i
  p=$(pid "$1")
  if [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; then
    for i in $(seq 100); do
      alive "$p" || break
      sleep 0.05
    done
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -rf "$1"
}

case $cmd in
  start) shift 2; start "$@" ;;
  dsn) running || { echo "pgbouncer.sh: no bouncer running in $dir" >&2; exit 1; }; dsn ;;
  stop) stop "$dir" ;;
  stop-all)
    for d in "$dir" "$dir"-*; do
      if [ -d "$d" ]; then stop "$d"; fi
    done
    ;;
  *) usage ;;
esac
