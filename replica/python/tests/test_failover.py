"""Failover with real processes: the leader killed under load, blocking calls across a
leader change, locks between Python processes, a client killed while holding a lock."""

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time

from concoord import Client

HERE = os.path.dirname(os.path.abspath(__file__))


def test_leader_killed_during_increments_from_8_threads(fresh_cluster):
    group = fresh_cluster
    with Client(group.addrs, timeout=30) as c:
        counter = c.create("load", "Counter")
        acked = [0] * 8
        failures = []
        stop = threading.Event()

        def work(i):
            while not stop.is_set():
                try:
                    counter.increment()
                    acked[i] += 1
                except Exception as e:  # counted and reported below
                    failures.append(repr(e))

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = sum(acked)
        leader = group.leader()
        group.kill(leader)
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a thread is stuck in a call"
        total = sum(acked)
        print("acknowledged %d increments (%d before the leader died)" % (total, before))
        assert failures == []
        assert total > before > 0, "no progress after the leader was killed"
        # Every acknowledged increment counted exactly once: re-sent calls carried their
        # (session, seq) and were answered from the reply cache, not applied again.
        assert counter.getvalue() == total


def test_blocked_acquire_survives_a_leader_change(fresh_cluster):
    group = fresh_cluster
    with Client(group.addrs) as holder, Client(group.addrs) as waiter:
        holder.create("guard", "Lock").acquire()
        got = []
        t = threading.Thread(target=lambda: got.append(waiter.lock("guard").acquire()))
        t.start()
        time.sleep(0.5)
        assert got == []
        group.kill(group.leader())
        group.leader()  # a new leader was elected
        assert got == [], "granted while still held"
        holder.lock("guard").release()
        t.join(30)
        assert got == [None]  # granted: Lock.acquire returns None
        assert waiter.lock("guard").locked() is True


def run_python(code, *args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)] + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


HOLD = """
    import sys, time
    from concoord.proxy.lock import Lock
    lock = Lock(sys.argv[1], name=sys.argv[2])
    lock.acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
    releasing = time.time()
    lock.release()
    print("released %.6f" % releasing, flush=True)
    time.sleep(60)
"""

TAKE = """
    import sys, time
    from concoord.proxy.lock import Lock
    lock = Lock(sys.argv[1], name=sys.argv[2])
    print("waiting", flush=True)
    lock.acquire()
    print("acquired %.6f" % time.time(), flush=True)
"""


def read_line(proc, timeout=30):
    """The child's next stdout line, or a failure (not a hang) when it prints nothing."""
    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                proc.lines.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()
    try:
        return proc.lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError("no output from the child within %ds" % timeout) from None


def test_a_lock_held_by_one_process_blocks_another_until_released(cluster, unique):
    name = unique("plock")
    with Client(cluster.addrs) as c:
        c.create(name, "Lock")
    holder = run_python(HOLD, cluster.addrs, name, "2.0")
    try:
        assert read_line(holder) == "held"
        taker = run_python(TAKE, cluster.addrs, name)
        out, err = taker.communicate(timeout=60)
        assert taker.returncode == 0, err
        acquired = float(out.split()[-1])
        released = float(read_line(holder).split()[-1])
        # The taker got the lock only once the holder had started to release it.
        assert acquired >= released, (acquired, released)
    finally:
        holder.kill()
        holder.wait()


def test_a_client_killed_holding_a_lock_loses_it_after_the_lease(cluster, unique):
    name = unique("klock")
    with Client(cluster.addrs) as c:
        c.create(name, "Lock")
    holder = run_python(HOLD, cluster.addrs, name, "600")
    try:
        assert read_line(holder) == "held"
        holder.kill()  # SIGKILL: no close, no release
        holder.wait()
        start = time.monotonic()
        with Client(cluster.addrs, blocking_timeout=20) as c:
            assert c.lock(name).acquire() is None  # granted
        waited = time.monotonic() - start
        print("lock free %.2fs after the holder was killed (lease 2 s)" % waited)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
