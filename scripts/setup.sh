#!/usr/bin/env bash
# Installs the Debian packages awith needs to build, test, run the tour and benchmark.
# Idempotent: when every package is present it does nothing. Needs root (or sudo) only to install.
set -euo pipefail

packages=(
  build-essential cmake g++ clang-14 libclang-rt-14-dev make pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev openssl zlib1g-dev nlohmann-json3-dev libpq-dev libhttp-parser-dev
  postgresql postgresql-contrib pgbouncer nginx-light socat netcat-openbsd curl
  python3 python3-aiohttp python3-uvloop python3-asyncpg
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nginx-light conflicts with other nginx flavours: any installed nginx binary will do.
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  missing=("${missing[@]/nginx-light}")
fi
missing=($(printf '%s\n' "${missing[@]}" | sed '/^$/d'))

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq || true
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's postgresql and pgbouncer packages may start system services; awith never uses them
# (tests and benchmarks start their own: scripts/pg_cluster.sh, scripts/pgbouncer.sh).
