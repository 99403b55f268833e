"""Increments per second and latency of the Python client against a local 3-replica group
in memory (`concoord local`), with 1 and 64 threads and 64 asyncio tasks.

    python bench/python/bench.py [--seconds 5] [--bin PATH] [--addrs "h:p, ..."]

Without --addrs it starts `concoord local --replicas 3` on free ports and stops it after.
Each line: mode, clients, increments/s, p50 and p99 latency in ms.
"""

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import concoord
import concoord.admin
import concoord.aio


def free_port_block(n):
    """A first port with n free ports after it (concoord local numbers them in a row)."""
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if base + n >= 65000:
            continue
        ok = True
        for p in range(base, base + n):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return base
    raise RuntimeError("no block of free ports")


def start_local(binary):
    base = free_port_block(3)
    proc = subprocess.Popen(
        [binary, "local", "--replicas", "3", "-p", str(base), "--dns-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    addrs = ", ".join("127.0.0.1:%d" % (base + i) for i in range(3))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if concoord.admin.status("127.0.0.1:%d" % base, 0.5).get("leader") is not None:
                return proc, addrs
        except (OSError, concoord.ConCoordError):
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the local cluster did not start")


def percentile(sorted_ms, q):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def report(mode, clients, count, seconds, lat):
    lat.sort()
    print(
        "%-8s clients=%-3d %8.0f increments/s   p50 %6.3f ms   p99 %6.3f ms"
        % (mode, clients, count / seconds, percentile(lat, 0.50), percentile(lat, 0.99)),
        flush=True,
    )


def threads_round(addrs, n, seconds):
    with concoord.Client(addrs) as c:
        counter = c.counter("counter")
        counter.increment()  # warm up the connection
        lat = []
        counts = [0] * n
        stop = time.monotonic() + seconds

        def work(i):
            mine = []
            while True:
                t0 = time.perf_counter()
                if t0 >= stop + 0:
                    break
                counter.increment()
                mine.append((time.perf_counter() - t0) * 1000)
                counts[i] += 1
                if time.monotonic() >= stop:
                    break
            lat.extend(mine)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report("threads", n, sum(counts), time.monotonic() - start, lat)


async def tasks_round(addrs, n, seconds):
    async with concoord.aio.Client(addrs) as c:
        counter = c.counter("counter")
        await counter.increment()
        lat = []
        count = 0
        stop = time.monotonic() + seconds

        async def work():
            nonlocal count
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                await counter.increment()
                lat.append((time.perf_counter() - t0) * 1000)
                count += 1

        start = time.monotonic()
        await asyncio.gather(*(work() for _ in range(n)))
        report("asyncio", n, count, time.monotonic() - start, lat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--addrs")
    ap.add_argument(
        "--bin",
        default=os.path.join(
            os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/concoord-target")),
            "release",
            "concoord",
        ),
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat every measurement")
    args = ap.parse_args()
    proc = None
    addrs = args.addrs
    if not addrs:
        if not os.path.exists(args.bin):
            sys.exit("no concoord binary at %s (cargo build --release -p concoord)" % args.bin)
        proc, addrs = start_local(args.bin)
    try:
        print("python %s, group %s, %gs per round" % (sys.version.split()[0], addrs, args.seconds))
        for _ in range(args.rounds):
            threads_round(addrs, 1, args.seconds)
            threads_round(addrs, 64, args.seconds)
            asyncio.run(tasks_round(addrs, 1, args.seconds))
            asyncio.run(tasks_round(addrs, 64, args.seconds))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
