"""The built-in object types: their class names, the seed's module names and their methods.

One table drives the blocking proxies (``concoord.proxy.*``, ``Client.counter(...)``) and the
asyncio ones (``concoord.aio``), so both always offer the same methods.
"""


class TypeSpec:
    def __init__(self, cls, module, methods, waits=None, lock_like=False, doc=""):
        #: Class name as the replicas know it ("BoundedSemaphore").
        self.cls = cls
        #: Module of ``concoord.proxy`` and default object name ("boundedsemaphore").
        self.module = module
        #: Remote methods, in the order the proxy lists them.
        self.methods = tuple(methods)
        #: Methods that may wait for another client (deadline: ``blocking_timeout``), each
        #: with how a call says not to: None (it always may wait), or the position of its
        #: `block` argument and that argument's default, read with Python truth as the
        #: replicas read it.
        self.waits = dict(waits or {})
        #: acquire/release with ``with proxy:``.
        self.lock_like = lock_like
        self.doc = doc

    def may_wait(self, method, args):
        """Whether this call can wait for another client: not `acquire(False)`, and a
        Queue's get/put only when asked to block."""
        if method not in self.waits:
            return False
        flag = self.waits[method]
        if flag is None:
            return True
        index, default = flag
        return bool(args[index]) if len(args) > index else default


LOCK_METHODS = ("acquire", "release")
#: `acquire(blocking=True)`: waits unless its first argument is false.
ACQUIRE_WAITS = {"acquire": (0, True)}

TYPES = (
    TypeSpec(
        "Counter",
        "counter",
        ("increment", "decrement", "getvalue"),
        doc="Counter(value=0): an integer.",
    ),
    TypeSpec(
        "Bank",
        "bank",
        ("open", "close", "debit", "deposit", "balance"),
        doc="Bank(): accounts with balances.",
    ),
    TypeSpec("Log", "log", ("write", "append", "read"), doc="Log(): a list of entries."),
    TypeSpec(
        "Membership",
        "membership",
        ("add", "remove", "members"),
        doc="Membership(): a set of members.",
    ),
    TypeSpec(
        "MeshMembership",
        "meshmembership",
        (
            "get_group_members",
            "get_group_epoch",
            "get_group_state",
            "add_group",
            "remove_group",
            "approve_join",
            "wait",
            "check_member",
            "notify_failure",
        ),
        waits={"wait": None},
        doc="MeshMembership(): named groups of nodes with epochs.",
    ),
    TypeSpec(
        "JobManager",
        "jobmanager",
        ("schedule", "deschedule", "list_jobs"),
        doc="JobManager(): a list of scheduled jobs.",
    ),
    TypeSpec(
        "Queue",
        "queue",
        ("put", "get", "put_nowait", "get_nowait", "qsize", "empty", "full"),
        waits={"get": (0, False), "put": (1, False)},
        doc="Queue(maxsize=0): FIFO; put/get raise Full/Empty as in ConCoord 1.1, "
        "put(item, True)/get(True) wait instead.",
    ),
    TypeSpec(
        "Stack",
        "stack",
        ("append", "pop", "get_size", "get_stack"),
        doc="Stack(): LIFO.",
    ),
    TypeSpec(
        "Dict",
        "dict",
        ("get", "set", "delete", "contains", "cas", "keys", "values", "items", "len"),
        doc="Dict(): a replicated map with compare-and-set.",
    ),
    TypeSpec(
        "Lock",
        "lock",
        LOCK_METHODS + ("locked",),
        waits=ACQUIRE_WAITS,
        lock_like=True,
        doc="Lock(): owned by the client's session; `with lock:` holds it.",
    ),
    TypeSpec(
        "RLock",
        "rlock",
        LOCK_METHODS,
        waits=ACQUIRE_WAITS,
        lock_like=True,
        doc="RLock(): reentrant, owned by the client's session.",
    ),
    TypeSpec(
        "Semaphore",
        "semaphore",
        LOCK_METHODS,
        waits=ACQUIRE_WAITS,
        lock_like=True,
        doc="Semaphore(count=1).",
    ),
    TypeSpec(
        "BoundedSemaphore",
        "boundedsemaphore",
        LOCK_METHODS,
        waits=ACQUIRE_WAITS,
        lock_like=True,
        doc="BoundedSemaphore(count=1): releasing above the initial count is a ValueError.",
    ),
    TypeSpec(
        "Condition",
        "condition",
        LOCK_METHODS + ("wait", "notify", "notify_all", "notifyAll"),
        waits=dict(ACQUIRE_WAITS, wait=None),
        lock_like=True,
        doc="Condition(): a lock with wait/notify.",
    ),
    TypeSpec(
        "Barrier",
        "barrier",
        ("wait", "parties", "n_waiting", "broken", "reset", "abort"),
        waits={"wait": None},
        doc="Barrier(count=1): releases its waiters when `count` have arrived.",
    ),
)

BY_CLASS = {t.cls: t for t in TYPES}
BY_MODULE = {t.module: t for t in TYPES}
