#!/usr/bin/env bash
# The main job end to end on this machine: Debian's pebble (a real ACME CA) and its DNS,
# a plaintext backend, and tlsfront with on-demand TLS for *.demo.test. curl connects to a
# name tlsfront has never seen; tlsfront answers pebble's TLS-ALPN-01 validation in its own
# handshake path, obtains the certificate while the handshake is held, and the client gets
# the backend's reply over a CA-issued certificate. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target tlsfront >/dev/null

WORK=$(mktemp -d /tmp/tlsfront-demo.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 did not open"; return 1; }

echo "== a throwaway HTTPS certificate for pebble's own API"
PEBBLE_TLS=$WORK/pebble-tls
bash certs/mkcerts.sh leaf "$PEBBLE_TLS" pebble localhost,127.0.0.1 --days 2 >/dev/null

PEBBLE_PORT=$(free_port); MGMT_PORT=$(free_port); DNS_PORT=$(free_port); DNS_MGMT=$(free_port)
BACKEND_PORT=$(free_port)

echo "== backend: a plaintext HTTP server on 127.0.0.1:$BACKEND_PORT"
mkdir -p "$WORK/www"
echo "Hello from the plaintext backend behind tlsfront" >"$WORK/www/index.html"
python3 -m http.server "$BACKEND_PORT" --bind 127.0.0.1 --directory "$WORK/www" \
  >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
wait_port "$BACKEND_PORT"

echo "== tlsfront --allow '*.demo.test' (on-demand TLS)"
build/tlsfront --listen 127.0.0.1:0 --allow '*.demo.test' --backend "127.0.0.1:$BACKEND_PORT" \
  --storage "$WORK/storage" --acme-directory "https://127.0.0.1:$PEBBLE_PORT/dir" \
  --acme-ca "$PEBBLE_TLS/ca.crt" --acme-email demo@demo.test --workers 2 \
  >"$WORK/access.log" 2>"$WORK/tlsfront.log" &
PIDS+=($!)
TF_PORT=""
for _ in $(seq 200); do
  TF_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/tlsfront.log" | head -1)
  [ -n "$TF_PORT" ] && break; sleep 0.05
done
[ -n "$TF_PORT" ] || { cat "$WORK/tlsfront.log"; exit 1; }
echo "   listening on 127.0.0.1:$TF_PORT"

echo "== pebble (ACME CA) + pebble-challtestsrv (DNS: every name -> 127.0.0.1)"
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$DNS_PORT" \
  -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$DNS_MGMT" >"$WORK/dns.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$MGMT_PORT",
 "certificate": "$PEBBLE_TLS/pebble.crt", "privateKey": "$PEBBLE_TLS/pebble.key", "httpPort": 5002,
 "tlsPort": $TF_PORT, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$WORK/pebble.json" \
  -dnsserver "127.0.0.1:$DNS_PORT" >"$WORK/pebble.log" 2>&1 &
PIDS+=($!)
wait_port "$PEBBLE_PORT"
curl -s --cacert "$PEBBLE_TLS/ca.crt" "https://127.0.0.1:$MGMT_PORT/roots/0" >"$WORK/pebble-root.pem"

NAME="tenant$RANDOM.demo.test"
echo "== first connection ever to https://$NAME (no certificate exists yet)"
START=$(date +%s.%N)
curl -sS --resolve "$NAME:$TF_PORT:127.0.0.1" --cacert "$WORK/pebble-root.pem" \
  -w '\n   (HTTP %{http_code}, total %{time_total}s)\n' "https://$NAME:$TF_PORT/"
echo "== the certificate it got"
echo | openssl s_client -connect "127.0.0.1:$TF_PORT" -servername "$NAME" 2>/dev/null \
  | openssl x509 -noout -subject -issuer -ext subjectAltName
echo "   verified against pebble's root from its management API: $(openssl verify -CAfile "$WORK/pebble-root.pem" -untrusted <(curl -s --cacert "$PEBBLE_TLS/ca.crt" "https://127.0.0.1:$MGMT_PORT/intermediates/0") <(echo | openssl s_client -connect "127.0.0.1:$TF_PORT" -servername "$NAME" 2>/dev/null | openssl x509) | sed 's/.*: //')"
echo "== tlsfront's log"
grep -E "certmgr|acme" "$WORK/tlsfront.log" | sed 's/^/   /'
echo "== access log"
sed 's/^/   /' "$WORK/access.log"
echo "== stored under --storage"
build/tlsfront certs --storage "$WORK/storage" 2>/dev/null | sed 's/^/   /' || true
echo "demo: done (everything it started is being stopped)"
