#!/usr/bin/env bash
# Runs examples/request_session against a local httpbin-style /get (tests/support/httpbin.py) and
# prints its output and exits with its status (tests/support/check_output.py checks both).
#   run_request_session.sh EXAMPLE_BINARY HTTPBIN_PY
set -uo pipefail
[ $# -eq 2 ] || { echo "usage: $0 EXAMPLE_BINARY HTTPBIN_PY" >&2; exit 2; }
PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 60 /usr/bin/python3 "$2" "$PORT" --lifetime 50 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { echo "httpbin.py did not start" >&2; exit 1; }
  sleep 0.05
done
timeout 30 "$1" "http://127.0.0.1:$PORT/get"
