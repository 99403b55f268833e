#!/usr/bin/env python3
"""Shared-counter load on etcd v3 through its gRPC-gateway JSON API (etcd 3.4: /v3/kv/...).

An increment is the compare-and-swap loop an etcd user writes for a counter:
  1. read the key and its mod_revision (serializable read: cheap, possibly stale; the CAS
     below catches staleness),
  2. txn: if mod_revision(key) == rev then put(key, value+1) else range(key),
  3. on a failed compare, take the fresh value and revision from the else-branch and go to 2.
Only successful increments count; failed compares (conflicts) are reported as retries.

  etcd_counter.py --endpoints http://127.0.0.1:23790,... --clients 1,8,64 --duration 10

Prints one line per round, in the same shape as `concoord bench`.
"""
import argparse
import asyncio
import base64
import multiprocessing as mp
import time

import aiohttp

KEY = base64.b64encode(b"bench-counter").decode()


def b64(s):
    return base64.b64encode(str(s).encode()).decode()


def parse_kv(kvs):
    if not kvs:
        return 0, 0
    kv = kvs[0]
    return int(base64.b64decode(kv.get("value", "")) or b"0"), int(kv.get("mod_revision", 0))


async def client(endpoint, deadline, lat, stats):
    conn = aiohttp.TCPConnector(limit=1)  # one connection per client, like concoord bench
    async with aiohttp.ClientSession(connector=conn) as s:
        rng = endpoint + "/v3/kv/range"
        txn = endpoint + "/v3/kv/txn"
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                async with s.post(rng, json={"key": KEY, "serializable": True}) as r:
                    value, rev = parse_kv((await r.json()).get("kvs"))
                while True:
                    body = {
                        "compare": [{"target": "MOD", "result": "EQUAL", "key": KEY,
                                     "mod_revision": rev}],
                        "success": [{"request_put": {"key": KEY, "value": b64(value + 1)}}],
                        "failure": [{"request_range": {"key": KEY}}],
                    }
                    async with s.post(txn, json=body) as r:
                        res = await r.json()
                    if r.status != 200:
                        raise RuntimeError(res)
                    if res.get("succeeded"):
                        break
                    stats["retries"] += 1
                    rr = res["responses"][0]["response_range"]
                    value, rev = parse_kv(rr.get("kvs"))
            except Exception:  # noqa: BLE001 - count and keep going
                stats["errors"] += 1
                await asyncio.sleep(0.01)
                continue
            lat.append(time.monotonic() - t0)


def worker(endpoints, n, first, duration, start_at, q):
    async def main():
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + duration
        lat, stats = [], {"retries": 0, "errors": 0}
        await asyncio.gather(*(client(endpoints[(first + i) % len(endpoints)], deadline, lat,
                                      stats) for i in range(n)))
        return lat, stats
    q.put(asyncio.run(main()))


def pct(sorted_lat, p):
    if not sorted_lat:
        return float("nan")
    return sorted_lat[min(len(sorted_lat) - 1, int(p * len(sorted_lat)))] * 1000


def round_(endpoints, clients, duration, procs):
    procs = max(1, min(procs, clients))
    q = mp.Queue()
    start_at = time.time() + 0.5
    ps, first = [], 0
    for i in range(procs):
        n = clients // procs + (1 if i < clients % procs else 0)
        ps.append(mp.Process(target=worker, args=(endpoints, n, first, duration, start_at, q)))
        first += n
    for p in ps:
        p.start()
    lat, retries, errors = [], 0, 0
    for _ in ps:
        l, st = q.get()
        lat += l
        retries += st["retries"]
        errors += st["errors"]
    for p in ps:
        p.join()
    lat.sort()
    ops = len(lat)
    print(f"clients={clients:<5} ops={ops:<9} ops/s={ops / duration:<10.1f} "
          f"p50={pct(lat, 0.50):.3f}ms p99={pct(lat, 0.99):.3f}ms "
          f"max={(lat[-1] * 1000 if lat else float('nan')):.3f}ms errors={errors} "
          f"retries={retries} retries/op={(retries / ops if ops else 0):.2f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2, help="load processes (default 2 = cores)")
    a = ap.parse_args()
    eps = [e.strip() for e in a.endpoints.split(",") if e.strip()]
    for c in (int(x) for x in a.clients.split(",")):
        round_(eps, c, a.duration, a.procs)
