#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, the tour and benchmarks.
#
#   pg_cluster.sh start DIR    initdb into DIR (created, owned by postgres) and start the server on
#                              127.0.0.1:<free port> with its unix socket in DIR; prints the DSN.
#                              Idempotent: a running cluster in DIR just prints its DSN.
#   pg_cluster.sh dsn DIR      prints the DSN of the running cluster in DIR
#   pg_cluster.sh restart DIR  pg_ctl restart -m fast (same port)
#   pg_cluster.sh stop DIR     stops the server and removes DIR
#   pg_cluster.sh stop-all DIR stops DIR and every cluster in DIR-* (what the tests' private
#                              clusters are called), for a test run that was killed midway
#
# Only the DSN goes to stdout; diagnostics go to stderr. Trust authentication, fsync off: for
# tests only. Nothing outside DIR is touched but the machine-wide port lock PORT_LOCK: every start
# and restart holds it from the port check until the server listens, so clusters started at the
# same time never choose the same port. initdb and pg_ctl refuse to run as root, so as root they
# run as the postgres user (runuser).
set -euo pipefail

usage() { echo "usage: $0 start|dsn|restart|stop|stop-all DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$2
case $dir in /*) ;; *) dir=$(pwd)/$dir ;; esac
data=$dir/data

pgbin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$pgbin/initdb" ] || { echo "pg_cluster: PostgreSQL server binaries not found (run scripts/setup.sh)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
running() { [ -f "$data/postmaster.pid" ] && as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1; }
dsn() { echo "host=127.0.0.1 port=$(cat "$dir/port") user=postgres dbname=postgres"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT_LOCK=${PG_PORT_LOCK:-/tmp/awith-pg-port.lock}
# Descriptor 8 holds the port lock; the server started under it must not inherit it (8>&-).
lock_ports() {
  : >>"$PORT_LOCK" 2>/dev/null || true  # created by the first start; read-only suffices for flock
  exec 8<"$PORT_LOCK"
  flock -w 120 8 || { echo "pg_cluster: waited 120 s for $PORT_LOCK" >&2; exit 1; }
}

start() {
  mkdir -p "$dir"
  # Concurrent test processes may all ask for the cluster: the first one creates it.
  exec 9>"$dir/.lock"
  flock -w 120 9
  if running; then dsn; return; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_pg "$pgbin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 9>&- \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  lock_ports
  # A port that another program takes between the check and the bind fails the start: next port.
  local port=${PG_PORT:-25432} tries=0
  while :; do
    while ! port_free "$port"; do port=$((port + 1)); done
    if as_pg "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 30 \
         -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
         start >/dev/null 8>&- 9>&-; then
      break
    fi
    tries=$((tries + 1))
    [ $tries -lt 5 ] || { tail -20 "$dir/postgres.log" >&2; exit 1; }
    echo "pg_cluster: the server did not start on port $port; trying the next one" >&2
    port=$((port + 1))
  done
  echo "$port" >"$dir/port"
  flock -u 8
  dsn
}

# The port is free while the server restarts: hold the port lock so that no start takes it.
restart() {
  lock_ports
  as_pg "$pgbin/pg_ctl" -D "$data" -l "$dir/postgres.log" -m fast -w -t 30 restart >/dev/null 8>&-
}

stop_cluster() {
  if [ -f "$1/data/postmaster.pid" ]; then
    as_pg "$pgbin/pg_ctl" -D "$1/data" -m fast -w -t 30 stop >/dev/null || true
  fi
  rm -rf "$1"
}

case $cmd in
  start) start ;;
  dsn) running || { echo "pg_cluster: no cluster running in $dir" >&2; exit 1; }; dsn ;;
  restart) restart ;;
  stop) stop_cluster "$dir" ;;
  stop-all)
    for d in "$dir" "$dir"-*; do
      if [ -d "$d" ]; then stop_cluster "$d"; fi
    done
    ;;
  *) usage ;;
esac
