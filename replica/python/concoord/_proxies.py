"""Proxy classes built from the type table: blocking ones for ``concoord.proxy.*`` and
``concoord.Client``, coroutine ones for ``concoord.aio``.

A proxy is a client plus an object name; every method is one remote call through consensus.
"""

from ._engine import DEFAULT
from ._types import TYPES


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise TypeError("an object name is a non-empty string, got %r" % (name,))
    return name


def _acquire_args(blocking, timeout):
    if not isinstance(blocking, bool):
        raise TypeError("acquire(blocking=...) takes a bool, got %r" % (blocking,))
    if timeout is not None and not blocking:
        raise ValueError("can't specify a timeout for a non-blocking call")
    return [] if blocking else [False]


class _NamedObject:
    """What both flavours share: the type, the object's name and the client it is called
    through."""

    _spec = None

    def _bind(self, client, name):
        self._client = client
        self._name = _check_name(name if name is not None else self._spec.module)

    @property
    def name(self):
        """The object's name in the group."""
        return self._name

    @property
    def client(self):
        return self._client

    def _call_options(self, method, args, timeout):
        """The keyword arguments of ``client.call`` for this call: whether it may wait,
        and its deadline (None: the client's default for that kind of call)."""
        return {
            "blocking": self._spec.may_wait(method, args),
            "timeout": DEFAULT if timeout is None else timeout,
        }


# ---- blocking flavour ------------------------------------------------------------------


class ObjectProxy(_NamedObject):
    """A named object of the group, called through a :class:`concoord.Client`.

    The seed's form ``Counter("127.0.0.1:14000, 127.0.0.1:14001")`` opens a client (a session)
    of its own for the object named after the class, lower-cased; ``name=`` picks another
    object; ``client=`` shares an existing client (``client.counter("hits")`` does that).
    """

    def __init__(self, bootstrap=None, timeout=60, debug=False, token=None, name=None,
                 client=None, **client_options):
        from .client import Client

        if client is not None:
            if bootstrap is not None or client_options:
                raise TypeError("pass either client= or an address list, not both")
            self._bind(client, name)
            self._owns_client = False
        else:
            if bootstrap is None:
                raise TypeError(
                    "%s() needs the group's addresses (\"host:port, host:port\") or domain"
                    % type(self).__name__
                )
            client = Client(bootstrap, timeout=timeout, debug=debug, token=token, **client_options)
            self._bind(client, name)
            self._owns_client = True

    def _call(self, method, args, timeout=None):
        options = self._call_options(method, args, timeout)
        return self._client.call(self._name, method, *args, **options)

    def __concoordinit__(self, *args):
        """Re-runs the constructor with these arguments through consensus (a reset)."""
        return self._call("__concoordinit__", args)

    def __str__(self):
        value = self._call("__str__", ())
        return value if isinstance(value, str) else str(value)

    def __repr__(self):
        # ConCoord 1.1's lock-like proxies forwarded repr() to the replicas; the others did
        # not, and a repr that needs the network would fail in tracebacks and debuggers.
        if not self._spec.lock_like:
            return "<%s proxy of %r>" % (self._spec.cls, self._name)
        value = self._call("__repr__", ())
        return value if isinstance(value, str) else repr(value)

    def disconnect(self):
        """Ends the session of the client this proxy opened (not of one it was given),
        releasing what it holds. (Not ``close``: Bank has a method of that name.)"""
        if self._owns_client:
            self._client.close()

    def __enter__(self):
        if self._spec.lock_like:
            self.acquire()
        return self

    def __exit__(self, *exc):
        if self._spec.lock_like:
            self.release()
        else:
            self.disconnect()
        return False


def _sync_method(name):
    def method(self, *args):
        return self._call(name, args)

    method.__name__ = name
    method.__doc__ = "Calls %s on the replicated object." % name
    return method


def _sync_acquire(self, blocking=True, timeout=None):
    """Acquires, waiting (across leader changes) until granted. Returns what ConCoord's
    object returns: None for Lock and Condition, True for the semaphores, True (or 1 when
    the holder re-enters) for RLock. ``blocking=False`` returns False at once instead of
    waiting (True when it got it). With ``timeout`` a
    :class:`concoord.Timeout` is raised when it passes (the call may still be granted
    later, holding the resource for this session)."""
    return self._call("acquire", _acquire_args(blocking, timeout), timeout=timeout)


def _build(spec, base, method_factory, acquire):
    attrs = {"_spec": spec, "__doc__": spec.doc, "__module__": "concoord.proxy." + spec.module}
    for m in spec.methods:
        attrs[m] = acquire if m == "acquire" else method_factory(m)
    return type(spec.cls, (base,), attrs)


SYNC = {t.cls: _build(t, ObjectProxy, _sync_method, _sync_acquire) for t in TYPES}


# ---- asyncio flavour -------------------------------------------------------------------


class AsyncObjectProxy(_NamedObject):
    """A named object called through a :class:`concoord.aio.Client`; every method is a
    coroutine. ``async with lock:`` holds a lock-like object."""

    def __init__(self, client, name=None):
        self._bind(client, name)

    async def _call(self, method, args, timeout=None):
        options = self._call_options(method, args, timeout)
        return await self._client.call(self._name, method, *args, **options)

    async def __concoordinit__(self, *args):
        return await self._call("__concoordinit__", args)

    async def str(self):
        """The object's ``__str__`` (``str()`` cannot await)."""
        return await self._call("__str__", ())

    async def repr(self):
        """The object's ``__repr__``."""
        return await self._call("__repr__", ())

    def __repr__(self):
        return "<%s %r (async proxy)>" % (self._spec.cls, self._name)

    async def __aenter__(self):
        if not self._spec.lock_like:
            raise TypeError("%s is not a lock-like object" % self._spec.cls)
        await self.acquire()
        return self

    async def __aexit__(self, *exc):
        await self.release()
        return False


def _async_method(name):
    async def method(self, *args):
        return await self._call(name, args)

    method.__name__ = name
    method.__doc__ = "Calls %s on the replicated object." % name
    return method


async def _async_acquire(self, blocking=True, timeout=None):
    """See the blocking proxy's ``acquire``."""
    return await self._call("acquire", _acquire_args(blocking, timeout), timeout=timeout)


ASYNC = {t.cls: _build(t, AsyncObjectProxy, _async_method, _async_acquire) for t in TYPES}
for _cls in ASYNC.values():
    _cls.__module__ = "concoord.aio"


def add_accessors(client_cls, proxies):
    """Gives a client class one method per built-in type, ``client.counter(name="counter")``,
    returning a proxy of ``proxies`` bound to that client (and the Rust client's spellings
    ``bounded_semaphore``, ``mesh_membership``, ``job_manager``)."""
    for spec in TYPES:
        setattr(client_cls, spec.module, _accessor(proxies[spec.cls], spec.module))
    client_cls.bounded_semaphore = client_cls.boundedsemaphore
    client_cls.mesh_membership = client_cls.meshmembership
    client_cls.job_manager = client_cls.jobmanager


def _accessor(cls, module):
    def accessor(self, name=module):
        return cls(client=self, name=name)

    accessor.__name__ = module
    accessor.__doc__ = "A %s proxy for the object ``name`` (default %r)." % (cls.__name__, module)
    return accessor
