#!/usr/bin/env bash
# TLS against plaintext in one run: three in-memory replicas of each on 127.0.0.1, the same
# closed-loop increments (`concoord bench`) at 1 and 64 clients, rounds alternating between
# the groups so all see the same machine. A third group adds an auth file (clients show a
# token, every request is checked against its role). Certificates come from `concoord certs`.
#   bash bench/tls.sh [DURATION] [ROUNDS]      (release build: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${CONCOORD_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/concoord-target}/release/concoord}"
DURATION="${1:-5s}"
ROUNDS="${2:-2}"
[ -x "$BIN" ] || { echo "no release binary at $BIN: run cargo build --release -p concoord" >&2; exit 1; }
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$BIN" certs init "$work/pki" >/dev/null
TOKEN=bench-token-0123456789abcdef
printf 'token bench admin %s\n' "$TOKEN" >"$work/auth"
start_group() { # base_port no|yes|auth
  local base=$1 tls=$2
  for i in 0 1 2; do
    local port=$((base + i)) flags=()
    if [ "$tls" != no ]; then
      "$BIN" certs issue "$work/pki" "r$port" --host 127.0.0.1 >/dev/null
      flags=(--tls-cert "$work/pki/r$port.crt" --tls-key "$work/pki/r$port.key" --tls-ca "$work/pki/ca.crt")
    fi
    [ "$tls" = auth ] && flags+=(--auth-file "$work/auth")
    local boot=()
    [ "$i" -gt 0 ] && boot=(-b "127.0.0.1:$base")
    "$BIN" replica -a 127.0.0.1 -p "$port" "${boot[@]}" "${flags[@]}" >"$work/r$port.log" 2>&1 &
    pids+=($!)
    sleep 1
  done
}
start_group 16100 no
start_group 16200 yes
start_group 16300 auth
sleep 2
plain="127.0.0.1:16100,127.0.0.1:16101,127.0.0.1:16102"
tls="127.0.0.1:16200,127.0.0.1:16201,127.0.0.1:16202"
auth="127.0.0.1:16300,127.0.0.1:16301,127.0.0.1:16302"
for round in $(seq 1 "$ROUNDS"); do
  for clients in 1 64; do
    printf 'round %s plaintext ' "$round"
    "$BIN" bench "$plain" --clients "$clients" --duration "$DURATION" | tail -1
    printf 'round %s TLS       ' "$round"
    "$BIN" bench "$tls" --clients "$clients" --duration "$DURATION" --ca "$work/pki/ca.crt" | tail -1
    printf 'round %s TLS+auth  ' "$round"
    CONCOORD_TOKEN="$TOKEN" "$BIN" bench "$auth" --clients "$clients" --duration "$DURATION" --ca "$work/pki/ca.crt" | tail -1
  done
done
