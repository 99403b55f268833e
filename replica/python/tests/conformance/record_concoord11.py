#!/usr/bin/env python2.7
"""Record how the original ConCoord 1.1 answers the conformance scenarios.

Python 2.7 only (ConCoord 1.1 is Python 2 code).  For every scenario in
scenarios.json this starts a fresh ConCoord 1.1 replica set on 127.0.0.1
(ports 24100-24999 by default), drives the scenario through 1.1's own client
proxies (concoord.proxy.<module>.<Class>) via runner.run_scenario, stops the
replicas it started and finally writes concoord11_outcomes.json.  The replay
of the same scenarios against ConCoord-rs compares with that file.

A single 1.1 replica never serves clients unless it is bootstrapped (it stays
"not up to date" and silently drops requests), so a one-replica set is started
with "-b" pointing at itself; with --replicas N>1 replica 0 is the bootstrap
of the others.  See NOTES.md.

Usage: python2.7 record_concoord11.py [--only NAME[,NAME]] [--replicas N] ...
(record_concoord11.sh installs ConCoord 1.1 and runs this.)
"""
import argparse
import atexit
import importlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # keep runner.pyc out of the test folder
sys.path.insert(0, HERE)
import runner  # noqa: E402

HOST = "127.0.0.1"
# Starts a replica exactly like the "concoord replica ..." console script.
BOOT = "import sys; sys.argv[0] = 'concoord'; from concoord.main import main; main()"

# 1.1's concoord/object/queue.py does "import Queue" and then defines
# "class Queue", which rebinds the name: Queue.__init__ calls Queue.Queue(...)
# on the class itself and fails, so a Queue replica exits at start-up
# ("Object cannot be found").  To record the object's intended behaviour the
# replica gets one runtime fix: a class attribute Queue.Queue pointing at the
# standard library's Queue.Queue, so the original code runs unchanged.
PATCHES = {
    "Queue": ("import Queue as q, concoord.object.queue as o; o.Queue.Queue = q.Queue; ",
              "class attribute concoord.object.queue.Queue.Queue = Queue.Queue (stdlib): "
              "1.1's class shadows the Queue module and cannot be constructed"),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=os.path.join(HERE, "scenarios.json"))
    p.add_argument("--out", default=os.path.join(HERE, "concoord11_outcomes.json"))
    p.add_argument("--only", action="append", default=[],
                   help="scenario name(s) to run (comma separated, repeatable)")
    p.add_argument("--concoord-lib", default=os.environ.get(
        "CONCOORD11_LIB", os.path.expanduser("~/.cache/concoord11/lib")),
        help="directory ConCoord 1.1 was pip-installed into (--target)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per scenario")
    p.add_argument("--port-base", type=int, default=24100)
    p.add_argument("--port-limit", type=int, default=24999)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--collect-timeout", type=float, default=5.0)
    p.add_argument("--keep-logs", action="store_true", help="keep replica logs (path printed)")
    return p.parse_args()


# ---------------------------------------------------------------- replicas

class PortPool(object):
    """Hands out loopback ports in [base, limit] that are free right now."""

    def __init__(self, base, limit):
        self.base, self.limit, self.next = base, limit, base

    def take(self):
        for _ in range(self.limit - self.base + 1):
            port = self.next
            self.next = self.base if port >= self.limit else port + 1
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((HOST, port))
                return port
            except socket.error:
                continue
            finally:
                s.close()
        raise RuntimeError("no free port in %d-%d" % (self.base, self.limit))


LIVE = []  # every started Popen, so that cleanup can always stop them


def stop_all():
    while LIVE:
        LIVE.pop().stop()


class ReplicaSet(object):
    """A fresh ConCoord 1.1 replica group holding one object."""

    def __init__(self, type_name, ports, lib, logdir, tag):
        self.type_name, self.ports, self.lib = type_name, ports, lib
        self.procs = []
        self.logs = []
        objname = "concoord.object.%s.%s" % (type_name.lower(), type_name)
        env = dict(os.environ)
        env["PYTHONPATH"] = lib + os.pathsep + env.get("PYTHONPATH", "")
        env["PYTHONUNBUFFERED"] = "1"
        LIVE.append(self)
        for i, port in enumerate(ports):
            # replica 0 bootstraps from itself when alone, the others from replica 0
            boot = "%s:%d" % (HOST, ports[0]) if (i > 0 or len(ports) == 1) else None
            boot_code = PATCHES.get(type_name, ("",))[0] + BOOT
            cmd = [sys.executable, "-c", boot_code, "replica", "-o", objname, "-a", HOST, "-p", str(port)]
            if boot:
                cmd += ["-b", boot]
            log = open(os.path.join(logdir, "%s-r%d.log" % (tag, i)), "w")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                               env=env, cwd=logdir))
            if i == 0 and len(ports) > 1:
                _wait_listening(port, self.procs[0])

    @property
    def bootstrap(self):
        return ",".join("%s:%d" % (HOST, p) for p in self.ports)

    def wait_ready(self, timeout=30.0):
        """Block until the leader answers a client request (raises on timeout)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError("replica exited with %s" % p.returncode)
            if _probe(self.bootstrap):
                if len(self.ports) > 1:
                    time.sleep(1.0)  # let the other replicas' joins finish
                return
            time.sleep(0.1)
        raise RuntimeError("replicas on %s not ready after %ss" % (self.bootstrap, timeout))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # 1.1's handler exits at once
        deadline = time.time() + 5
        for p in self.procs:
            while p.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()
        if self in LIVE:
            LIVE.remove(self)


def _wait_listening(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect((HOST, port))
            return
        except socket.error:
            time.sleep(0.05)
        finally:
            s.close()


def _probe(bootstrap):
    """Send one request for a method that does not exist, with a short timeout.

    1.1 drops requests while the replica is not up to date; once the leader is
    ready it answers CR_EXCEPTION ("Method Does Not Exist") without touching
    the object.  Done by hand because ClientProxy retries with a 5 s timeout.
    """
    from concoord.clientproxy import ClientProxy
    from concoord.enums import (MSG_CLIENTREQUEST, MSG_CLIENTREPLY, CR_OK, CR_EXCEPTION,
                                FLD_PROPOSAL, FLD_TOKEN, FLD_CLIENTBATCH, FLD_SENDCOUNT)
    from concoord.message import create_message
    from concoord.pack import Proposal
    try:
        cp = ClientProxy(bootstrap)
    except Exception:
        return False
    try:
        for attempt in range(len(cp.bootstraplist)):
            cp.conn.settimeout(0.3)
            msg = create_message(MSG_CLIENTREQUEST, cp.me,
                                 {FLD_PROPOSAL: Proposal(cp.me, attempt + 1, ("__concoord_probe__",)),
                                  FLD_TOKEN: None, FLD_CLIENTBATCH: False, FLD_SENDCOUNT: 0})
            if not cp.conn.send(msg):
                return False
            for reply in cp.conn.received_bytes():
                if reply.type == MSG_CLIENTREPLY and reply.replycode in (CR_OK, CR_EXCEPTION):
                    return True
            if not cp.trynewbootstrap():  # rejected by a non-leader: try the next one
                return False
        return False
    except Exception:
        return False
    finally:
        cp.socket.close()


# ---------------------------------------------------------------- 1.1 adapter

def _park(*_args):
    """Replaces a finished scenario's reconnect logic: the proxy's threads sleep."""
    while True:
        time.sleep(3600)


class Adapter(object):
    """make_proxy / invoke for ConCoord 1.1's client proxies."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.proxies = []

    def make_proxy(self, type_name, client_index):
        module = importlib.import_module("concoord.proxy." + type_name.lower())
        proxy = getattr(module, type_name)(self.bootstrap)
        self.proxies.append(proxy)
        return proxy

    @staticmethod
    def invoke(proxy, method, args):
        # call the object's method by name, even where the 1.1 proxy lacks it
        name = "__init__" if method == "__concoordinit__" else method
        try:
            return proxy.proxy.invoke_command(name, *args)
        except Exception as exc:
            # 1.1 raises Exception(<unpickled object exception>): unwrap it
            if type(exc) is Exception and len(exc.args) == 1 \
                    and isinstance(exc.args[0], BaseException):
                raise exc.args[0]
            raise

    def retire(self):
        """Once the replicas go away, keep the abandoned proxies quiet and idle
        (1.1's receive threads would otherwise spin or print tracebacks)."""
        for proxy in self.proxies:
            proxy.proxy.trynewbootstrap = _park


# ---------------------------------------------------------------- main

def concoord_version(lib):
    """Version from the installed package metadata (egg-info or dist-info)."""
    for name in sorted(os.listdir(lib)):
        if name.startswith("concoord-") and name.endswith(("egg-info", "dist-info")):
            for meta in ("PKG-INFO", "METADATA"):
                path = os.path.join(lib, name, meta)
                if os.path.exists(path):
                    for line in open(path):
                        if line.startswith("Version:"):
                            return line.split(":", 1)[1].strip()
    return "unknown version"


def main():
    args = parse_args()
    lib = os.path.abspath(args.concoord_lib)
    if not os.path.isdir(os.path.join(lib, "concoord")):
        sys.exit("ConCoord 1.1 not found in %s (run record_concoord11.sh)" % lib)
    sys.path.insert(0, lib)
    import concoord.clientproxy  # noqa: F401  (fail early if the install is broken)

    scenarios = runner.load_scenarios(args.scenarios)
    wanted = set(n for arg in args.only for n in arg.split(",") if n)
    if wanted:
        unknown = wanted - set(s["name"] for s in scenarios)
        if unknown:
            sys.exit("unknown scenario(s): %s" % ", ".join(sorted(unknown)))
        scenarios = [s for s in scenarios if s["name"] in wanted]

    logdir = tempfile.mkdtemp(prefix="concoord11-record-")
    ports = PortPool(args.port_base, args.port_limit)
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))

    def start(i):
        sc = scenarios[i]
        return ReplicaSet(sc["type"], [ports.take() for _ in range(args.replicas)],
                          lib, logdir, "%02d-%s" % (i, sc["name"]))

    results = []
    began = time.time()
    try:
        upcoming = start(0) if scenarios else None
        for i, sc in enumerate(scenarios):
            current = upcoming
            # start the next scenario's replicas while this one runs (startup takes ~1 s)
            upcoming = start(i + 1) if i + 1 < len(scenarios) else None
            current.wait_ready()
            adapter = Adapter(current.bootstrap)
            t0 = time.time()
            try:
                outcomes = runner.run_scenario(sc, adapter.make_proxy, adapter.invoke,
                                               settle=args.settle,
                                               collect_timeout=args.collect_timeout)
            finally:
                adapter.retire()
                current.stop()
            results.append({"name": sc["name"], "outcomes": outcomes})
            sys.stderr.write("%-34s %5.1fs  %s\n" % (sc["name"], time.time() - t0, " ".join(
                _short(o) for o in outcomes)))
    finally:
        stop_all()
        if args.keep_logs:
            sys.stderr.write("replica logs kept in %s\n" % logdir)
        else:
            shutil.rmtree(logdir, ignore_errors=True)

    doc = {"recorded_with": "ConCoord %s on Python %s" % (concoord_version(lib),
                                                           platform.python_version()),
           "patches": dict((t, PATCHES[t][1]) for t in set(s["type"] for s in scenarios)
                           if t in PATCHES),
           "scenarios": results}
    with open(args.out, "w") as handle:
        runner.dump_json(doc, handle)
    sys.stderr.write("wrote %s (%d scenarios, %.0fs)\n" % (args.out, len(results), time.time() - began))
    sys.stderr.flush()
    sys.stdout.flush()
    # abandoned 1.1 client threads are parked daemons; skip interpreter teardown
    os._exit(0)


def _short(outcome):
    if "ok" in outcome:
        return "ok"
    if "error" in outcome:
        return outcome["error"]
    return "blocked" if outcome.get("blocked") else "idle"


if __name__ == "__main__":
    main()
