#!/usr/bin/env bash
# DNS nameserver benchmark: ConCoord's nameserver (-n) against BIND 9 serving the same zone
# (authoritative only), both on 127.0.0.1 high ports, measured with dnsperf in one run over
# UDP and TCP with a mixed A/SRV/TXT query file. While ours is measured, the view changes
# every 100 ms (a member is added and removed again through `concoord membership`); the
# same churn runs while BIND is measured, so both see the same background load.
#
# Printed side by side: queries per second, and server CPU time per query (user+system
# ticks of the server process from /proc/PID/stat, before and after each run).
#
# Run by hand (not part of the test command):  bash bench/dns/run.sh
# Needs: dnsperf, bind9 (named), bind9-dnsutils (dig) — Debian packages.
# Knobs: DURATION (s per run, default 10), CLIENTS (dnsperf -c, default 8),
#        OUTSTANDING (dnsperf -q, default 200), CONCOORD_BIN (default: release build).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10}"
CLIENTS="${CLIENTS:-8}"
OUTSTANDING="${OUTSTANDING:-200}"
DOMAIN=counterdomain.com
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/concoord-target}"

for tool in dnsperf named dig; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "missing: $tool (Debian packages: dnsperf bind9 bind9-dnsutils)" >&2
    exit 1
  fi
done

BIN="${CONCOORD_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release -q -p concoord
  BIN="$CARGO_TARGET_DIR/release/concoord"
fi

WORK="$(mktemp -d /tmp/concoord-dnsbench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Free high ports on loopback, from the kernel.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P1=$(free_port); P2=$(free_port); P3=$(free_port); DNS_PORT=$(free_port); BIND_PORT=$(free_port); SPARE=$(free_port)
ADDRS="127.0.0.1:$P1, 127.0.0.1:$P2, 127.0.0.1:$P3"

echo "== starting 3 replicas (the first serves $DOMAIN on 127.0.0.1:$DNS_PORT)"
"$BIN" replica -o counter -a 127.0.0.1 -p "$P1" -n "$DOMAIN" --dns-port "$DNS_PORT" 2>"$WORK/r1.log" &
OURS=$!; PIDS+=("$OURS")
sleep 1
"$BIN" replica -a 127.0.0.1 -p "$P2" -b "127.0.0.1:$P1" 2>"$WORK/r2.log" & PIDS+=($!)
sleep 1
"$BIN" replica -a 127.0.0.1 -p "$P3" -b "127.0.0.1:$P1" 2>"$WORK/r3.log" & PIDS+=($!)
for _ in $(seq 100); do
  n=$(dig +short +norec @127.0.0.1 -p "$DNS_PORT" "_concoord._tcp.$DOMAIN" SRV | wc -l)
  [ "$n" -ge 3 ] && break
  sleep 0.1
done
[ "$n" -ge 3 ] || { echo "the nameserver did not list 3 replicas" >&2; tail "$WORK"/r*.log >&2; exit 1; }

echo "== copying our zone into a BIND zone file"
{
  echo "\$ORIGIN $DOMAIN."
  echo "\$TTL 5"
  dig +noall +answer +norec @127.0.0.1 -p "$DNS_PORT" "$DOMAIN" SOA
  for t in NS A TXT; do dig +noall +answer +norec @127.0.0.1 -p "$DNS_PORT" "$DOMAIN" "$t"; done
  dig +noall +answer +norec @127.0.0.1 -p "$DNS_PORT" "_concoord._tcp.$DOMAIN" SRV
  for i in 1 2 3; do
    dig +noall +answer +norec @127.0.0.1 -p "$DNS_PORT" "r$i.$DOMAIN" A
    dig +noall +answer +norec @127.0.0.1 -p "$DNS_PORT" "ns$i.$DOMAIN" A
  done
} >"$WORK/zone.db"
cat >"$WORK/named.conf" <<EOF
options {
  directory "$WORK";
  listen-on port $BIND_PORT { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  allow-transfer { none; };
  pid-file "$WORK/named.pid";
  dnssec-validation no;
};
zone "$DOMAIN" { type primary; file "$WORK/zone.db"; };
EOF
named -g -c "$WORK/named.conf" -u "$(id -un)" >"$WORK/named.log" 2>&1 &
BIND=$!; PIDS+=("$BIND")
for _ in $(seq 100); do
  dig +short +norec @127.0.0.1 -p "$BIND_PORT" "$DOMAIN" SOA >/dev/null 2>&1 && break
  sleep 0.1
done
dig +short +norec @127.0.0.1 -p "$BIND_PORT" "$DOMAIN" SOA | grep -q . ||
  { echo "BIND did not start" >&2; cat "$WORK/named.log" >&2; exit 1; }

# The query mix: addresses, SRV (with additional A records) and TXT.
cat >"$WORK/queries.txt" <<EOF
$DOMAIN A
_concoord._tcp.$DOMAIN SRV
$DOMAIN TXT
r1.$DOMAIN A
_concoord._tcp.$DOMAIN SRV
r2.$DOMAIN A
EOF

# user+system clock ticks of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# Adds and removes a member that never starts: each is one view change, one every 100 ms
# of wall clock (the time the command itself takes is counted in).
churn() {
  local next now wait op=add
  next=$(date +%s%N)
  while :; do
    "$BIN" membership "$op" "$ADDRS" "127.0.0.1:$SPARE" --timeout 2s >/dev/null 2>&1 || true
    if [ "$op" = add ]; then op=remove; else op=add; fi
    next=$((next + 100000000))
    now=$(date +%s%N)
    wait=$((next - now))
    if [ "$wait" -gt 0 ]; then sleep "$(printf '0.%09d' "$wait")"; else next=$now; fi
  done
}

# measure NAME PID PORT MODE CHURN -> "qps cpu_us_per_query views"
measure() {
  local name=$1 pid=$2 port=$3 mode=$4 with_churn=$5 churn_pid="" before after out qps queries serial0 serial1
  serial0=$(dig +short +norec @127.0.0.1 -p "$port" "$DOMAIN" SOA | awk '{print $3}')
  if [ "$with_churn" = yes ]; then churn & churn_pid=$!; fi
  before=$(ticks "$pid")
  out=$(dnsperf -s 127.0.0.1 -p "$port" -m "$mode" -d "$WORK/queries.txt" -l "$DURATION" \
    -c "$CLIENTS" -T 1 -q "$OUTSTANDING" 2>&1)
  after=$(ticks "$pid")
  if [ -n "$churn_pid" ]; then kill "$churn_pid" 2>/dev/null; wait "$churn_pid" 2>/dev/null || true; fi
  serial1=$(dig +short +norec @127.0.0.1 -p "$port" "$DOMAIN" SOA | awk '{print $3}')
  echo "$out" >"$WORK/dnsperf-$name-$mode.txt"
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  queries=$(echo "$out" | awk '/Queries completed/ {print $3}')
  local lost
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  awk -v q="$qps" -v n="$queries" -v t=$((after - before)) -v hz="$HZ" -v s0="$serial0" -v s1="$serial1" -v lost="$lost" \
    'BEGIN { printf "%10.0f %12.2f %8s %10d\n", q, (n > 0 ? t / hz * 1e6 / n : 0), lost, int((s1 - s0) / 1000) }'
}

echo
echo "dnsperf: $DURATION s per run, $CLIENTS clients, $OUTSTANDING outstanding, 1 thread; query mix:"
sed 's/^/  /' "$WORK/queries.txt"
echo
printf '%-30s %-4s %10s %12s %8s %10s\n' server proto QPS "CPU us/q" lost "views"
for mode in udp tcp; do
  printf '%-30s %-4s %s\n' "concoord (view every 100 ms)" "$mode" "$(measure ours "$OURS" "$DNS_PORT" "$mode" yes)"
  printf '%-30s %-4s %s\n' "BIND $(named -v | awk '{print $2}')" "$mode" "$(measure bind "$BIND" "$BIND_PORT" "$mode" yes)"
done
echo
echo "CPU us/q: the server process's user+system time per completed query (ours includes the"
echo "replica's own Paxos work for the view changes); views: zone serial changes seen during the"
echo "run (BIND serves a static copy; the view churn runs during its runs too, as equal load)."
