#!/usr/bin/env bash
# awith's benchmarks beside its peers, in one invocation (make bench):
#   1. micro: awith's Google Benchmark binaries (BUILD_DIR/bench/micro_*) and
#      $SHARED_BENCH/micro/run_micro.sh (asyncio, uvloop, Boost.Asio), pinned to the same CPU,
#      printed as ONE table with the ratios peer / awith (> 1: awith is faster);
#   2. fairness: scripts/bench_fairness.sh (a deadline over a task that never waits, I/O round
#      trips while many tasks are ready), beside the same programs in asyncio;
#   3. echo, http, pg: the shared harnesses with awith's echo server, HTTP load client and pg load
#      client added as extra rows, when those binaries are built;
#   4. pgcache: awith alone, unnamed statements against cached prepared ones (bench/pg_statement_cache)
#      on a throwaway cluster (scripts/pg_cluster.sh).
#
#   scripts/bench.sh BUILD_DIR
#
# Env: SHARED_BENCH [the peer benchmark harness directory, default set below]; absent = awith's own
#      micro-benchmarks only.
#      SUITES ["micro fairness echo http pg pgcache"]  SAMPLES [5] repetitions (median)  SCALE [1.0] peers' counts
#      MICRO_CPU [0]  BENCH_MIN_TIME [0.3] s per awith repetition  PY [/usr/bin/python3]
#      ECHO_ONLY ["epoll_echo asio_coro libuv awith"] (the harness's ONLY)  REPEATS [3] per suite
#      ECHO_SERVER_CMD [BUILD_DIR/examples/echo_server --bench {port}] awith's echo server
# Only numbers of the same run compare: quote the ratios, not the absolute values.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd) || { echo "bench: no build directory $1" >&2; exit 2; }
SHARED_BENCH=${SHARED_BENCH:-$ROOT/../shared/bench}
SUITES=${SUITES:-micro fairness echo http pg pgcache}
SAMPLES=${SAMPLES:-5}
SCALE=${SCALE:-1.0}
MICRO_CPU=${MICRO_CPU:-0}
BENCH_MIN_TIME=${BENCH_MIN_TIME:-0.3}
PY=${PY:-/usr/bin/python3}
REPEATS=${REPEATS:-3}
export PY REPEATS

OUT=$BUILD/bench-results/$(date +%Y%m%d_%H%M%S)
mkdir -p "$OUT"
status=0
peers=1
if [ ! -d "$SHARED_BENCH" ]; then
  peers=0
  echo "bench: $SHARED_BENCH not found: the peers (asyncio, uvloop, Asio, epoll_echo, wrk, pgbench) are skipped;" \
       "awith's own micro-benchmarks still run (set SHARED_BENCH=/path/to/shared/bench)"
else
  SHARED_BENCH=$(cd "$SHARED_BENCH" && pwd)
fi
wants() { [[ " $SUITES " == *" $1 "* ]]; }

# The first built binary of that name under BUILD_DIR/bench or BUILD_DIR/examples.
find_binary() {
  local dir
  for dir in bench examples; do
    [ -x "$BUILD/$dir/$1" ] && { echo "$BUILD/$dir/$1"; return 0; }
  done
  return 1
}

run_micro() {
  local bins=() bin jsons=() peer_args=()
  for bin in "$BUILD"/bench/micro_*; do
    [ -x "$bin" ] && bins+=("$bin")
  done
  if [ ${#bins[@]} -eq 0 ]; then
    echo "bench: no micro-benchmark binary in $BUILD/bench (configure with -DAWITH_BUILD_BENCH=ON)" >&2
    return 1
  fi
  for bin in "${bins[@]}"; do
    local name json
    name=$(basename "$bin")
    json=$OUT/$name.json
    echo "# awith $name (CPU $MICRO_CPU, median of $SAMPLES)" >&2
    if ! timeout 900 taskset -c "$MICRO_CPU" "$bin" --benchmark_format=json \
        --benchmark_repetitions="$SAMPLES" --benchmark_report_aggregates_only=true \
        --benchmark_min_time="$BENCH_MIN_TIME" >"$json" 2>"$OUT/$name.log"; then
      echo "bench: $name failed (see $OUT/$name.log)" >&2
      status=1
      continue
    fi
    jsons+=(--awith "$json")
  done
  if [ "$peers" = 1 ] && [ -x "$SHARED_BENCH/micro/run_micro.sh" ]; then
    echo "# peers: $SHARED_BENCH/micro/run_micro.sh (asyncio, uvloop, asio; a few minutes)" >&2
    if SAMPLES=$SAMPLES SCALE=$SCALE MICRO_CPU=$MICRO_CPU timeout 1800 "$SHARED_BENCH/micro/run_micro.sh" \
        >"$OUT/peers_micro.md" 2>"$OUT/peers_micro.log"; then
      # run_micro.sh ends with "raw (...): <asyncio.tsv> <uvloop.tsv> <asio.tsv>".
      local raw
      raw=$(sed -n 's/^raw ([^)]*): //p' "$OUT/peers_micro.md" | tail -1)
      for f in $raw; do
        case $f in
          *.asyncio.tsv) peer_args+=(--asyncio "$f") ;;
          *.uvloop.tsv) peer_args+=(--uvloop "$f") ;;
          *.asio.tsv) peer_args+=(--asio "$f") ;;
        esac
      done
    else
      echo "bench: run_micro.sh failed (see $OUT/peers_micro.log); the table has awith only" >&2
      status=1
    fi
  fi
  [ ${#jsons[@]} -gt 0 ] || return 1
  echo
  echo "## Micro-benchmarks: ns per operation (bytes for memory), median of $SAMPLES, CPU $MICRO_CPU, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "ratio = peer / awith (> 1: awith is faster or smaller). Only same-run ratios are meaningful."
  [ ${#peer_args[@]} -gt 0 ] || echo "peers skipped: awith's numbers only."
  echo
  "$PY" "$ROOT/bench/micro_table.py" "${jsons[@]}" "${peer_args[@]}" | tee "$OUT/micro.md"
}

run_echo() {
  # examples/echo_server --bench PORT echoes every byte until the peer closes (the harness's mode).
  local command=${ECHO_SERVER_CMD:-}
  if [ -z "$command" ]; then
    if [ -x "$BUILD/examples/echo_server" ]; then
      command="$BUILD/examples/echo_server --bench {port}"
    elif [ -x "$BUILD/bench/echo_server" ]; then
      command="$BUILD/bench/echo_server {port}"
    else
      echo "bench: echo: no echo_server built, skipped"
      return 0
    fi
  fi
  echo
  echo "## Echo ($SHARED_BENCH/echo/run_echo.sh, awith = $command)"
  ONLY=${ECHO_ONLY:-epoll_echo asio_coro libuv awith} timeout 1800 "$SHARED_BENCH/echo/run_echo.sh" \
    "awith=$command" 2>"$OUT/echo.log" | tee "$OUT/echo.md" ||
    { echo "bench: run_echo.sh failed (see $OUT/echo.log)"; status=1; }
}

run_http() {
  local client
  client=$(find_binary http_load) || { echo "bench: http: no http_load built, skipped"; return 0; }
  echo
  echo "## HTTP ($SHARED_BENCH/http/run_http.sh, awith = $client)"
  timeout 1200 "$SHARED_BENCH/http/run_http.sh" "awith=$client {url} {conns} {duration}" \
    2>"$OUT/http.log" | tee "$OUT/http.md" ||
    { echo "bench: run_http.sh failed (see $OUT/http.log)"; status=1; }
}

run_pg() {
  local client
  client=$(find_binary pg_load) || { echo "bench: pg: no pg_load built, skipped"; return 0; }
  echo
  echo "## PostgreSQL ($SHARED_BENCH/pg/run_pg.sh, awith = $client)"
  timeout 1200 "$SHARED_BENCH/pg/run_pg.sh" "awith=$client {host} {port} {clients} {duration}" \
    "awith_pipeline=$client {host} {port} {clients} {duration} --pipeline" \
    2>"$OUT/pg.log" | tee "$OUT/pg.md" ||
    { echo "bench: run_pg.sh failed (see $OUT/pg.log)"; status=1; }
}

run_pgcache() {
  local prog dir dsn
  prog=$(find_binary pg_statement_cache) || { echo "bench: pgcache: no pg_statement_cache built, skipped"; return 0; }
  dir=/tmp/awith-bench-pgcache-$$
  dsn=$("$ROOT/scripts/pg_cluster.sh" start "$dir") || { echo "bench: pgcache: no cluster"; return 1; }
  echo
  echo "## PostgreSQL statements, unnamed vs cached ($prog)"
  "$prog" "$dsn" 20000 | tee "$OUT/pgcache.md" || status=1
  "$ROOT/scripts/pg_cluster.sh" stop "$dir"
}

wants micro && { run_micro || status=1; }
if wants fairness; then
  echo
  "$ROOT/scripts/bench_fairness.sh" "$BUILD" | tee "$OUT/fairness.md" || status=1
fi
if [ "$peers" = 1 ]; then
  wants echo && run_echo
  wants http && run_http
  wants pg && run_pg
fi
wants pgcache && { run_pgcache || status=1; }
echo
echo "bench: results in $OUT"
exit $status
