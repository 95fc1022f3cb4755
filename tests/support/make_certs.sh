#!/usr/bin/env bash
# Generates the throwaway PKI of the TLS tests into DIR (idempotent: an existing, complete DIR is
# kept). Nothing here is secret or trusted anywhere else.
#   ca.pem              the test CA (trusted by the tests)
#   server.pem/.key     CN=localhost, SAN DNS:localhost + IP:127.0.0.1, signed by the test CA
#   client.pem/.key     CN=awith test client, signed by the test CA (client authentication)
#   other-ca.pem        an unrelated CA: trusting only it makes server.pem untrusted
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
FILES=(ca.pem server.pem server.key client.pem client.key other-ca.pem)
complete() { local f; for f in "${FILES[@]}"; do [ -s "$DIR/$f" ] || return 1; done; }
complete && exit 0

TMP=$(mktemp -d "${DIR%/}.tmp.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
ossl() { openssl "$@" 2>/dev/null; }
key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
ca() {  # NAME CN
  key "$1.key"
  ossl req -x509 -new -key "$1.key" -sha256 -days 3650 -subj "/O=awith test/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
}
leaf() {  # NAME CN EXTENSIONS
  key "$1.key"
  ossl req -new -key "$1.key" -subj "/O=awith test/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" >"$1.ext"
  ossl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 3650 -extfile "$1.ext" -out "$1.pem"
}
ca ca "awith test CA"
ca other-ca "awith other CA"
leaf server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
leaf client "awith test client" "extendedKeyUsage=clientAuth"
chmod 644 ./*.pem ./*.key
mkdir -p "$DIR"
for f in "${FILES[@]}"; do mv -f "$f" "$DIR/$f"; done
complete
