#!/usr/bin/env bash
# Durable-mode (-w) benchmark on this machine: throughput and latency with 1, 8 and 64
# clients, memory of a replica at rest and during a long write load, and the time a
# replica takes to recover and catch up after a restart with 1,000,000 commands in its
# history. Prints numbers; asserts nothing (the machine is shared and noisy).
#
#   bash bench/durable.sh [COMMANDS]        (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/concoord-target}"
COMMANDS="${1:-1000000}"
cargo build --release -q -p concoord
BIN="$CARGO_TARGET_DIR/release/concoord"
WORK=$(mktemp -d /var/tmp/concoord-bench.XXXXXX)
PORT=${PORT:-24100}
ADDRS="127.0.0.1:$PORT, 127.0.0.1:$((PORT+1)), 127.0.0.1:$((PORT+2))"
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # index, extra args...
  local i=$1; shift
  "$BIN" replica -a 127.0.0.1 -p $((PORT+i)) --data-dir "$WORK/r$i" "$@" 2>>"$WORK/r$i.log" &
  PIDS[$i]=$!
}
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
decided() { # address -> decided slot
  "$BIN" status "$1" --json 2>/dev/null | python3 -c '
import json,sys
d=json.load(sys.stdin); d=d if isinstance(d,list) else d.get("replicas",[d])
for r in d:
    if r.get("addr")==sys.argv[1] and "decided_upto" in r: print(r["decided_upto"]); break
else: print(-1)' "$1"
}
wait_view() {
  for _ in $(seq 1 300); do
    if "$BIN" status "$ADDRS" 2>/dev/null | grep -q '\*'; then return 0; fi
    sleep 0.1
  done
  echo "cluster did not come up" >&2; return 1
}

echo "== durable mode (-w, fsync per batch), 3 replicas on 127.0.0.1, $(nproc) cores"
start 0 -o counter; sleep 0.5
start 1 -b "127.0.0.1:$PORT"; sleep 1
start 2 -b "127.0.0.1:$PORT"; wait_view; sleep 1
echo "memory at rest: r0 $(rss_mib "${PIDS[0]}") MiB, r1 $(rss_mib "${PIDS[1]}") MiB, r2 $(rss_mib "${PIDS[2]}") MiB"

echo "== throughput and latency"
"$BIN" bench "$ADDRS" --clients 1,8,64 --duration 10s

echo "== long write load: $COMMANDS increments with 64 clients, memory sampled"
start_slot=$(decided "127.0.0.1:$PORT")
"$BIN" bench "$ADDRS" --clients 64 --duration 3600s > "$WORK/load.txt" 2>&1 &
LOAD=$!
begin=$(date +%s)
while :; do
  sleep 5
  now=$(decided "127.0.0.1:$PORT")
  echo "t=$(( $(date +%s) - begin ))s leader slot $now  rss r0 $(rss_mib "${PIDS[0]}") MiB r1 $(rss_mib "${PIDS[1]}") MiB r2 $(rss_mib "${PIDS[2]}") MiB  disk $(du -sm "$WORK" | cut -f1) MiB"
  value=$("$BIN" call "$ADDRS" counter getvalue 2>/dev/null || echo 0)
  if [ "${value:-0}" -ge "$COMMANDS" ]; then break; fi
done
kill $LOAD 2>/dev/null || true; wait $LOAD 2>/dev/null || true
echo "counter value $("$BIN" call "$ADDRS" counter getvalue) after $(( $(date +%s) - begin ))s"

echo "== recovery: restart one replica with its disk and wait until it has caught up"
kill -9 "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true
target=$(decided "127.0.0.1:$PORT")
t0=$(date +%s.%N)
start 2
until [ "$(decided "127.0.0.1:$((PORT+2))")" -ge "$target" ]; do sleep 0.02; done
t1=$(date +%s.%N)
echo "replica 2 recovered and caught up to slot $target in $(python3 -c "print(round($t1-$t0,2))") s ($(du -sm "$WORK/r2" | cut -f1) MiB on disk)"

echo "== recovery of the whole cluster: kill all three, restart, first answer"
for i in 0 1 2; do kill -9 "${PIDS[$i]}"; done; wait 2>/dev/null || true
t0=$(date +%s.%N)
for i in 0 1 2; do start $i; done
until "$BIN" call "$ADDRS" counter getvalue >/dev/null 2>&1; do sleep 0.02; done
t1=$(date +%s.%N)
echo "cluster answered again after $(python3 -c "print(round($t1-$t0,2))") s; counter = $("$BIN" call "$ADDRS" counter getvalue)"
echo "memory after recovery: r0 $(rss_mib "${PIDS[0]}") MiB, r1 $(rss_mib "${PIDS[1]}") MiB, r2 $(rss_mib "${PIDS[2]}") MiB"
