#!/usr/bin/env bash
# The tour (make tour): every program of examples/ in a fixed order, each under a heading naming
# the part of asyncio it mirrors.
#
#   scripts/tour.sh BUILD_DIR
#
# One line of TOUR per example: binary | heading | setup | arguments. setup is one of
#   -      nothing
#   echo   BUILD_DIR/examples/echo_server runs in the background on a free port ({port})
#   httpbin  tests/support/httpbin.py answers like httpbin.org's /get ({url} = http://127.0.0.1:<port>/get)
#   pg     a throwaway PostgreSQL cluster (scripts/pg_cluster.sh) ({dsn} = its libpq DSN)
# An example whose binary is not built is skipped with a note; a failing example fails the tour
# (the others still run). A program of examples/ missing from TOUR runs last, without arguments.
# Every example and every server is bounded in time (EXAMPLE_TIMEOUT, 60 s).
set -uo pipefail

TOUR=(
  "hello_tasks       | asyncio.run / create_task / gather / sleep / Task.cancel    | -    |"
  "threads           | asyncio.to_thread / run_coroutine_threadsafe               | -    |"
  "async_conn        | async with: a class with __aenter__ / __aexit__            | -    |"
  "generator_manager | @contextlib.asynccontextmanager                             | -    |"
  "task_group        | asyncio.TaskGroup                                          | -    |"
  "timeouts          | asyncio.timeout / timeout_at / wait_for                    | -    |"
  "semaphore         | asyncio.Semaphore                                          | -    |"
  "echo_client       | asyncio streams: start_server + open_connection            | echo | {port}"
  "request_session   | aiohttp.ClientSession                                      | httpbin | {url}"
  "database          | SQLAlchemy AsyncEngine: begin() / connect() scopes, pool  | pg   | {dsn}"
)
# Programs the tour starts as a setup step rather than on their own.
SETUP_PROGRAMS=(echo_server)

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd) || { echo "tour: no build directory $1" >&2; exit 2; }
EXAMPLES=$BUILD/examples
EXAMPLE_TIMEOUT=${EXAMPLE_TIMEOUT:-60}
WORK=$(mktemp -d /tmp/awith-tour.XXXXXX)
chmod 755 "$WORK"  # the postgres user runs the cluster under it

ECHO_PID="" PG_DIR="" HTTPBIN_PID=""
stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
cleanup() {
  stop_pid "$ECHO_PID"
  stop_pid "$HTTPBIN_PID"
  [ -n "$PG_DIR" ] && "$ROOT/scripts/pg_cluster.sh" stop "$PG_DIR" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
free_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 1)); done
  echo "$p"
}
is_listening() {  # without connecting, so that servers do not see a stray connection
  if command -v ss >/dev/null; then ss -Hltn "sport = :$1" | grep -q .; else (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; fi
}
wait_listening() {  # PORT PID: until something listens on 127.0.0.1:PORT (5 s), while PID lives
  local i
  for i in $(seq 100); do
    is_listening "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# --- setups: each prints nothing on success and sets the placeholders it provides -------------
PORT="" URL="" DSN=""
setup_echo() {
  [ -x "$EXAMPLES/echo_server" ] || { echo "echo_server is not built"; return 1; }
  PORT=$(free_port 19300)
  timeout $((EXAMPLE_TIMEOUT * 2)) "$EXAMPLES/echo_server" "$PORT" >"$WORK/echo_server.log" 2>&1 &
  ECHO_PID=$!
  wait_listening "$PORT" "$ECHO_PID" || { echo "echo_server did not listen on $PORT"; cat "$WORK/echo_server.log"; return 1; }
}
teardown_echo() {
  stop_pid "$ECHO_PID"
  ECHO_PID=""
  if [ -s "$WORK/echo_server.log" ]; then
    echo "-- echo_server's output:"
    cat "$WORK/echo_server.log"
  fi
}
setup_httpbin() {
  local port
  port=$(free_port 18400)
  timeout $((EXAMPLE_TIMEOUT * 2)) /usr/bin/python3 "$ROOT/tests/support/httpbin.py" "$port" \
    --lifetime $((EXAMPLE_TIMEOUT * 2)) >"$WORK/httpbin.log" 2>&1 &
  HTTPBIN_PID=$!
  wait_listening "$port" "$HTTPBIN_PID" || { echo "httpbin.py did not start"; cat "$WORK/httpbin.log"; return 1; }
  URL=http://127.0.0.1:$port/get
}
teardown_httpbin() { stop_pid "$HTTPBIN_PID"; HTTPBIN_PID=""; }
setup_pg() {
  PG_DIR=$WORK/pg
  DSN=$("$ROOT/scripts/pg_cluster.sh" start "$PG_DIR") || { echo "could not start PostgreSQL"; return 1; }
}
teardown_pg() { "$ROOT/scripts/pg_cluster.sh" stop "$PG_DIR" >/dev/null 2>&1; PG_DIR=""; }

# --- the tour ------------------------------------------------------------------------------------
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }
failed=() skipped=() ran=0
run_example() {  # BINARY HEADING SETUP ARGS
  local bin=$1 heading=$2 setup=$3 args=$4 source="examples/$1.cpp" rc
  [ "$setup" = echo ] && source="examples/echo_server.cpp + examples/$1.cpp"
  echo
  echo "== $heading — $source =="
  if [ ! -x "$EXAMPLES/$bin" ]; then
    echo "-- skipped: $EXAMPLES/$bin is not built (example not written yet, or examples disabled)"
    skipped+=("$bin")
    return
  fi
  if [ "$setup" != - ] && ! "setup_$setup"; then
    echo "-- FAILED: the $setup setup for $bin did not come up"
    failed+=("$bin")
    return
  fi
  args=${args//\{port\}/$PORT}
  args=${args//\{url\}/$URL}
  local argv=()
  [ -n "$args" ] && read -r -a argv <<<"$args"
  if [ "$setup" = pg ]; then argv=("$DSN"); fi  # the DSN contains spaces: one argument
  timeout "$EXAMPLE_TIMEOUT" "$EXAMPLES/$bin" "${argv[@]}"
  rc=$?
  [ "$setup" != - ] && "teardown_$setup"
  ran=$((ran + 1))
  if [ $rc -ne 0 ]; then
    [ $rc -eq 124 ] && echo "-- FAILED: $bin did not finish within ${EXAMPLE_TIMEOUT}s" || echo "-- FAILED: $bin exited with status $rc"
    failed+=("$bin")
  fi
}

echo "awith tour: every example in order, each under the part of asyncio it mirrors ($EXAMPLES)"
listed=("${SETUP_PROGRAMS[@]}")
for line in "${TOUR[@]}"; do
  IFS='|' read -r bin heading setup args <<<"$line"
  bin=$(trim "$bin")
  listed+=("$bin")
  run_example "$bin" "$(trim "$heading")" "$(trim "$setup")" "$(trim "$args")"
done
for src in "$ROOT"/examples/*.cpp; do
  bin=$(basename "$src" .cpp)
  [[ " ${listed[*]} " == *" $bin "* ]] && continue
  run_example "$bin" "$bin (not yet in scripts/tour.sh's table)" - ""
done

echo
echo "tour: $ran example(s) ran, ${#skipped[@]} skipped${skipped:+ (${skipped[*]})}, ${#failed[@]} failed${failed:+ (${failed[*]})}"
[ ${#failed[@]} -eq 0 ]
