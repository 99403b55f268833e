#!/usr/bin/env bash
# ConCoord vs etcd on one machine: a shared counter incremented by 1, 8 and 64 concurrent
# clients for DURATION seconds each (default 10), against
#   - a 3-member etcd cluster (default fsync, durable), increments as a get + txn
#     compare-and-swap loop (bench/compare/etcd_counter.py, Python asyncio over etcd's
#     gRPC-gateway JSON API), counting successful increments and reporting retries;
#   - a 3-replica ConCoord cluster in memory, and again with -w --data-dir (durable),
#     through `concoord bench` (counter.increment()).
# Everything runs on 127.0.0.1 and shares this machine's cores with the load generators.
# Prints numbers; asserts nothing.
#
#   bash bench/compare/etcd.sh [DURATION]
#
# Needs: Debian packages etcd-server etcd-client (installed with apt-get if missing, as root),
# python3-venv; the venv ~/.cache/concoord-bench-venv with aiohttp is made on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
CLIENTS="1,8,64"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/concoord-target}"
VENV="$HOME/.cache/concoord-bench-venv"
ETCD_PORT=23790       # clients 23790/23792/23794, peers 23791/23793/23795
CC_PORT=24300         # in memory 24300-24302, durable 24310-24312

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
fi
if ! "$VENV/bin/python" -c 'import aiohttp' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q aiohttp
fi
cargo build --release -q -p concoord
BIN="$CARGO_TARGET_DIR/release/concoord"

WORK=$(mktemp -d /var/tmp/concoord-vs-etcd.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# ---- etcd
ETCD_EPS=""
CLUSTER=""
for i in 0 1 2; do
  CLUSTER+="${CLUSTER:+,}e$i=http://127.0.0.1:$((ETCD_PORT + 2*i + 1))"
  ETCD_EPS+="${ETCD_EPS:+,}http://127.0.0.1:$((ETCD_PORT + 2*i))"
done
echo "== etcd $(etcd --version | awk '/etcd Version/ {print $3}'): 3 members on 127.0.0.1, default fsync, $(nproc) cores"
for i in 0 1 2; do
  c=$((ETCD_PORT + 2*i)); p=$((c + 1))
  ETCD_UNSUPPORTED_ARCH= etcd --name "e$i" --data-dir "$WORK/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    --initial-cluster-token concoord-bench --log-level error >"$WORK/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 1 200); do
  if ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" endpoint health >/dev/null 2>&1; then break; fi
  sleep 0.1
done
ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" endpoint health
ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" put bench-counter 0 >/dev/null
"$VENV/bin/python" bench/compare/etcd_counter.py --endpoints "$ETCD_EPS" --clients "$CLIENTS" \
  --duration "$DURATION" | tee "$WORK/etcd.txt"
echo "etcd counter value: $(ETCDCTL_API=3 etcdctl --endpoints "$ETCD_EPS" get bench-counter --print-value-only)"
stop_all

# ---- ConCoord
concoord_round() { # name port extra-args...
  local name=$1 port=$2; shift 2
  local addrs="127.0.0.1:$port, 127.0.0.1:$((port+1)), 127.0.0.1:$((port+2))"
  "$BIN" replica -o counter -a 127.0.0.1 -p "$port" "$@" ${1:+--data-dir "$WORK/$name-0"} \
    2>"$WORK/$name-0.log" &
  PIDS+=($!); sleep 0.5
  for i in 1 2; do
    "$BIN" replica -b "127.0.0.1:$port" -a 127.0.0.1 -p $((port+i)) "$@" \
      ${1:+--data-dir "$WORK/$name-$i"} 2>"$WORK/$name-$i.log" &
    PIDS+=($!); sleep 1
  done
  for _ in $(seq 1 300); do
    if "$BIN" status "$addrs" 2>/dev/null | grep -q '\*'; then break; fi
    sleep 0.1
  done
  sleep 1
  "$BIN" bench "$addrs" --clients "$CLIENTS" --duration "${DURATION}s" | tee "$WORK/$name.txt"
  echo "counter value: $("$BIN" call "$addrs" counter getvalue)"
  stop_all
}
echo "== ConCoord: 3 replicas on 127.0.0.1, in memory"
concoord_round mem "$CC_PORT"
echo "== ConCoord: 3 replicas on 127.0.0.1, durable (-w --data-dir, fsync per batch)"
concoord_round disk $((CC_PORT + 10)) -w

# ---- side by side
python3 - "$WORK" "$CLIENTS" <<'EOF'
import re, sys
work, clients = sys.argv[1], sys.argv[2].split(",")
def load(name):
    rows = {}
    for line in open(f"{work}/{name}.txt"):
        m = re.search(r"clients=(\d+).*?ops/s=([\d.]+).*?p50=([\d.]+)ms p99=([\d.]+)ms", line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), m.group(3), m.group(4))
        r = re.search(r"clients=(\d+).*retries/op=([\d.]+)", line)
        if r:
            rows[r.group(1)] += (r.group(2),)
    return rows
sys_ = [("etcd (fsync, CAS)", load("etcd")), ("ConCoord in memory", load("mem")),
        ("ConCoord durable -w", load("disk"))]
print()
print(f"{'clients':>7} | " + " | ".join(f"{n:^32}" for n, _ in sys_))
print(f"{'':>7} | " + " | ".join(f"{'ops/s':>10} {'p50 ms':>10} {'p99 ms':>10}" for _ in sys_))
print("-" * (10 + 35 * len(sys_)))
for c in clients:
    cells = []
    for _, rows in sys_:
        r = rows.get(c)
        cells.append(f"{r[0]:>10.0f} {float(r[1]):>10.3f} {float(r[2]):>10.3f}" if r else f"{'-':>32}")
    print(f"{c:>7} | " + " | ".join(cells))
e = load("etcd")
print("etcd CAS retries per successful increment: " +
      ", ".join(f"{c} clients {e[c][3]}" for c in clients if c in e and len(e[c]) > 3))
EOF
