#!/usr/bin/env bash
# Fairness probes of bench/fairness.cpp beside the same programs in asyncio (bench/fairness_asyncio.py):
#   1. a consumer that never has to wait (a queue holding ITEMS items) under timeout(10 ms):
#      how late after its deadline it is interrupted;
#   2. 1-byte echo round trips from another process (pinned to another CPU) while N tasks on the
#      server are always ready (each ~1 us of work per step): p50 and p99.
#
#   scripts/bench_fairness.sh BUILD_DIR
#
# Env: PY [/usr/bin/python3]  ITEMS [20000000] (asyncio: ITEMS/10, it only gets slower)
#      TASKS ["100 1000"]  ROUND_TRIPS [500]  SERVER_CPU [0]  CLIENT_CPU [1]
# Every run is bounded in time; only numbers of the same run compare.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$1/bench/fairness
[ -x "$BIN" ] || { echo "bench_fairness: $BIN not built (configure with -DAWITH_BUILD_BENCH=ON)" >&2; exit 2; }
PY=${PY:-/usr/bin/python3}
ITEMS=${ITEMS:-20000000}
TASKS=${TASKS:-100 1000}
ROUND_TRIPS=${ROUND_TRIPS:-500}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PEER="$PY $ROOT/bench/fairness_asyncio.py"

echo "## A consumer that never waits, under timeout(10 ms)"
timeout 120 taskset -c "$SERVER_CPU" "$BIN" queue_timeout "$ITEMS" | sed 's/^/awith   /'
timeout 300 taskset -c "$SERVER_CPU" $PEER queue_timeout $((ITEMS / 10)) | sed 's/^/asyncio /'

# Starts a busy server, reads its port, runs the client, stops the server.
round_trips() {  # NAME N SERVER_COMMAND...
  local name=$1 n=$2 port_file server port
  shift 2
  port_file=$(mktemp)
  timeout 150 taskset -c "$SERVER_CPU" "$@" busy_server "$n" 120 >"$port_file" &
  server=$!
  for _ in $(seq 200); do
    port=$(head -1 "$port_file")
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "$name N=$n: the server did not start"
  else
    sleep 0.5  # every busy task is running
    echo "$name N=$n $(timeout 90 taskset -c "$CLIENT_CPU" "$BIN" rtt_client "$port" "$ROUND_TRIPS")"
  fi
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  rm -f "$port_file"
}

echo
echo "## 1-byte echo round trips while N tasks are always ready (server CPU $SERVER_CPU, client CPU $CLIENT_CPU)"
for n in $TASKS; do
  round_trips "awith  " "$n" "$BIN"
  round_trips "asyncio" "$n" $PEER
done
