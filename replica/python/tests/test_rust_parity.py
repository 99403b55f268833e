"""The Python client and the Rust client (through the `concoord call` command line) give
the same results and the same errors for the same sequence of calls, on twin objects."""

import json
import subprocess

from concoord import Client
from concoord.exceptions import RemoteError
from conftest import concoord_bin

TYPES = {
    "counter": ("Counter", [7]),
    "bank": ("Bank", []),
    "dict": ("Dict", []),
    "stack": ("Stack", []),
    "queue": ("Queue", [2]),
    "log": ("Log", []),
    "membership": ("Membership", []),
    "mesh": ("MeshMembership", []),
    "jobs": ("JobManager", []),
    "lock": ("Lock", []),
    "sem": ("BoundedSemaphore", [1]),
    "barrier": ("Barrier", [1]),
}

# (object, method, args): each call is made once through each client.
CALLS = [
    ("counter", "increment", []),
    ("counter", "decrement", []),
    ("counter", "decrement", []),
    ("counter", "getvalue", []),
    ("counter", "__str__", []),
    ("counter", "__concoordinit__", [3]),
    ("counter", "getvalue", []),
    ("counter", "increment", [1]),
    ("bank", "open", ["alice"]),
    ("bank", "open", ["alice"]),
    ("bank", "deposit", ["alice", 10]),
    ("bank", "debit", ["alice", 3]),
    ("bank", "debit", ["alice", 100]),
    ("bank", "balance", ["alice"]),
    ("bank", "balance", ["bob"]),
    ("bank", "close", ["bob"]),
    ("bank", "__str__", []),
    ("dict", "set", ["a", [1, {"b": 2.5}]]),
    ("dict", "get", ["a"]),
    ("dict", "cas", ["a", [1, {"b": 2.5}], "new"]),
    ("dict", "items", []),
    ("dict", "delete", ["zz"]),
    ("stack", "append", ["x"]),
    ("stack", "append", [2]),
    ("stack", "pop", []),
    ("stack", "get_stack", []),
    ("stack", "get_size", []),
    ("stack", "pop", []),
    ("stack", "pop", []),
    ("queue", "put", ["a"]),
    ("queue", "put", ["b"]),
    ("queue", "put", ["c"]),
    ("queue", "qsize", []),
    ("queue", "full", []),
    ("queue", "get", []),
    ("queue", "get", []),
    ("queue", "get", []),
    ("queue", "empty", []),
    ("log", "append", ["one"]),
    ("log", "append", ["two"]),
    ("log", "read", []),
    ("log", "write", ["three"]),
    ("log", "read", []),
    ("log", "__str__", []),
    ("membership", "add", ["n1"]),
    ("membership", "add", ["n2"]),
    ("membership", "remove", ["n3"]),
    ("membership", "__str__", []),
    ("mesh", "add_group", ["g", 2]),
    ("mesh", "approve_join", ["g", "n1", 1]),
    ("mesh", "approve_join", ["g", "n2", 1]),
    ("mesh", "check_member", ["g", "n1"]),
    ("mesh", "get_group_state", ["g"]),
    ("mesh", "get_group_epoch", ["nope"]),
    ("jobs", "schedule", ["j1"]),
    ("jobs", "schedule", ["j2"]),
    ("jobs", "deschedule", ["j1"]),
    ("jobs", "deschedule", ["j9"]),
    ("jobs", "list_jobs", []),
    # Each `concoord call` is a session of its own, so only calls that do not depend on
    # what a session holds are compared for the lock-like types.
    ("lock", "locked", []),
    ("lock", "release", []),
    ("lock", "__repr__", []),
    ("lock", "__str__", []),
    ("sem", "release", []),
    ("barrier", "wait", []),
    ("barrier", "__str__", []),
    ("nothing", "getvalue", []),
]


def cli(addrs, *args):
    out = subprocess.run(
        [concoord_bin(), "call", addrs, "--"] + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode == 0:
        return ("ok", json.loads(out.stdout))
    kind, _, message = out.stderr.strip().rpartition("\n")[2].partition(": ")
    return ("error", kind, message)


def python(client, obj, method, args):
    try:
        return ("ok", client.call(obj, method, *args))
    except RemoteError as e:
        return ("error", e.kind, str(e))


def test_python_and_rust_clients_agree(cluster, unique):
    suffix = unique("parity")
    with Client(cluster.addrs) as c:
        for short, (type_name, ctor) in TYPES.items():
            for side in ("py", "rs"):
                c.create("%s-%s-%s" % (short, side, suffix), type_name, *ctor)
        compared = 0
        for obj, method, args in CALLS:
            py = python(c, "%s-py-%s" % (obj, suffix), method, args)
            rs = cli(
                cluster.addrs,
                "%s-rs-%s" % (obj, suffix),
                method,
                *[json.dumps(a) for a in args],
            )
            if py[0] == "error" and py[1] == "NameError":
                # The object names differ by side; compare the message's shape only.
                assert rs[0] == "error" and rs[1] == "NameError", (obj, method, rs)
            else:
                assert py == rs, "%s.%s%r: python %r, rust %r" % (obj, method, tuple(args), py, rs)
            compared += 1
        assert compared == len(CALLS)
