"""The asyncio client: the same methods as :class:`concoord.Client`, as coroutines.

::

    async with concoord.aio.Client("127.0.0.1:14000, 127.0.0.1:14001") as c:
        counter = c.counter("hits")
        await counter.increment()
        async with c.lock("config"):
            ...

Many tasks may share one client: their calls are pipelined over one connection in one
session.
"""

import asyncio
import os
import ssl
import logging

from .. import _wire
from .._discovery import Seeds
from .._engine import DEFAULT, Engine, Options
from .._proxies import ASYNC, add_accessors
from .._types import BY_CLASS, BY_MODULE, TYPES
from ..exceptions import ClientClosed

__all__ = ["Client", "connect"] + [t.cls for t in TYPES]

globals().update(ASYNC)


def type_name(type_):
    """The replica-side name of a type given as a class name, short or dotted name, or a
    proxy class."""
    spec = getattr(type_, "_spec", None)
    if spec is not None:
        return spec.cls
    if not isinstance(type_, str) or not type_:
        raise TypeError("a type is a name such as 'Counter' or a proxy class, got %r" % (type_,))
    return type_


def client_options(timeout, blocking_timeout, connect_timeout, keepalive_interval,
                   keepalive_timeout, failover_timeout, token, debug, ca=None, cert=None,
                   key=None, tls_server_name=None):
    # ConCoord 1.1's security token: shown to replicas that run with an auth file.
    token = token or os.environ.get("CONCOORD_TOKEN") or None
    if token is not None and not isinstance(token, str):
        raise TypeError("token must be a string")
    if debug:
        logger = logging.getLogger("concoord")
        logger.setLevel(logging.DEBUG)
        if not logger.handlers and not logging.getLogger().handlers:
            logger.addHandler(logging.StreamHandler())
    for label, value in (("timeout", timeout), ("blocking_timeout", blocking_timeout)):
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise ValueError("%s must be a positive number of seconds or None" % label)
    return Options(
        timeout=timeout,
        blocking_timeout=blocking_timeout,
        connect_timeout=connect_timeout,
        keepalive_interval=keepalive_interval,
        keepalive_timeout=keepalive_timeout,
        failover_timeout=failover_timeout,
        tls=tls_context(ca, cert, key),
        token=token,
        tls_server_name=tls_server_name or os.environ.get("CONCOORD_TLS_SERVER_NAME") or None,
    )


def tls_context(ca=None, cert=None, key=None):
    """The TLS context for replicas that serve TLS: ``ca`` (or ``CONCOORD_CA``) is the
    group's CA certificate, ``cert`` and ``key`` (or ``CONCOORD_CERT``, ``CONCOORD_KEY``) a
    client certificate to show. None without a CA: plaintext."""
    ca = ca or os.environ.get("CONCOORD_CA") or None
    cert = cert or os.environ.get("CONCOORD_CERT") or None
    key = key or os.environ.get("CONCOORD_KEY") or None
    if ca is None:
        if cert is not None or key is not None:
            raise ValueError("a client certificate needs the group's CA (ca=...)")
        return None
    if (cert is None) != (key is None):
        raise ValueError("cert and key go together")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


class Client:
    """A session with a ConCoord-rs group.

    ``addrs`` is ``"host:port, host:port"`` (any replicas of the group; the leader is found
    through redirects) or the group's domain, looked up through its ``_concoord._tcp`` SRV
    records (``dns_server="127.0.0.1:15353"`` asks that nameserver instead of the system's).
    The session opens on ``await client.start()``, ``async with``, or the first call.
    """

    def __init__(self, addrs, *, timeout=30.0, blocking_timeout=None, connect_timeout=5.0,
                 keepalive_interval=1.0, keepalive_timeout=3.0, failover_timeout=30.0,
                 dns_server=None, token=None, debug=False, ca=None, cert=None, key=None,
                 tls_server_name=None):
        options = client_options(timeout, blocking_timeout, connect_timeout,
                                 keepalive_interval, keepalive_timeout, failover_timeout,
                                 token, debug, ca, cert, key, tls_server_name)
        self._engine = Engine(Seeds(addrs, dns_server), options)
        self._start = None
        self._closed = False

    async def start(self):
        """Finds the group and opens the session (ConnectionError when nothing answers)."""
        if self._closed:
            raise ClientClosed("client closed")
        if self._start is None:
            self._start = asyncio.ensure_future(self._engine.start())
        await asyncio.shield(self._start)
        return self

    async def close(self):
        """Ends the session (releasing its locks and permits) and disconnects."""
        self._closed = True
        await self._engine.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()
        return False

    @property
    def session(self):
        """The session id (None before the session opens)."""
        return self._engine.session

    async def _request(self, op, what, timeout):
        await self.start()
        return await self._engine.request(op, what, timeout)

    async def call(self, obj, method, *args, blocking=False, timeout=DEFAULT):
        """Calls ``method(*args)`` on the object named ``obj``."""
        if not isinstance(method, str) or not method:
            raise TypeError("a method name is a non-empty string, got %r" % (method,))
        if timeout is DEFAULT:
            options = self._engine.options
            timeout = options.blocking_timeout if blocking else options.timeout
        op = _wire.call_op(obj, method, args)
        return await self._request(op, "%s.%s()" % (obj, method), timeout)

    async def create(self, name, type_, *args):
        """Creates the object ``name`` of ``type_`` (``"Counter"``, ``"counter"``,
        ``"concoord.object.counter.Counter"`` or a proxy class) with constructor args."""
        op = _wire.create_op(name, type_name(type_), args)
        await self._request(op, "create %s" % name, self._engine.options.timeout)
        return self.object(name, type_)

    async def delete(self, name):
        """Deletes the object ``name``; its waiting calls fail."""
        await self._request(_wire.delete_op(name), "delete %s" % name,
                            self._engine.options.timeout)

    async def list(self):
        """The group's objects: a dict from name to type name."""
        return await self._request(_wire.LIST, "list", self._engine.options.timeout)

    def object(self, name, type_=None):
        """A proxy of the right class for the object ``name`` of ``type_``; for a
        user-defined type (or no type), a proxy whose every attribute is a remote method."""
        cls = _proxy_class(type_)
        if cls is None:
            return AsyncUserObject(self, name)
        return cls(self, name)

    async def load_type(self, source, module, class_, replace=False):
        """Defines a user object type through consensus: Python ``source`` whose class
        ``class_`` becomes ``module.class_``. ``replace`` swaps the code of a type already
        defined (its objects keep their state). Returns the type as the group holds it."""
        op = _wire.define_type_op(module, class_, source, replace)
        return await self._request(op, "define %s.%s" % (module, class_),
                                   self._engine.options.timeout)

    async def types(self):
        """The user types: a list of dicts (name, sha256, size, methods, objects)."""
        return await self._request(_wire.LIST_TYPES, "list types", self._engine.options.timeout)

    async def show_type(self, name):
        """One user type, with its source."""
        return await self._request(_wire.show_type_op(name), "show type %s" % name,
                                   self._engine.options.timeout)


def _proxy_class(type_):
    """The proxy class of a built-in type; None for a user-defined one."""
    if type_ is None:
        return None
    spec = getattr(type_, "_spec", None)
    if spec is None:
        key = type_name(type_).rpartition(".")[2]
        spec = BY_CLASS.get(key) or BY_MODULE.get(key.lower())
        if spec is None:
            return None
    if spec.cls not in ASYNC:
        return None
    return ASYNC[spec.cls]


class AsyncUserObject:
    """An object of a user-defined type: every public attribute is a coroutine method that
    calls the replicated object."""

    def __init__(self, client, name):
        self._client = client
        self._name = name

    @property
    def name(self):
        return self._name

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args):
            return await self._client.call(self._name, method, *args)

        call.__name__ = method
        return call

    async def str(self):
        return await self._client.call(self._name, "__str__")


add_accessors(Client, ASYNC)


async def connect(addrs, **options):
    """``await connect(addrs)``: a started :class:`Client`."""
    return await Client(addrs, **options).start()
