"""The blocking client: ``concoord.Client``.

It runs the asyncio session engine on one background thread shared by every blocking client
of the process; calls from any number of threads are pipelined over the client's one
connection.
"""

import asyncio
import atexit
import os
import threading
import weakref

from . import aio
from ._engine import DEFAULT
from ._proxies import SYNC, add_accessors
from .exceptions import ClientClosed

__all__ = ["Client"]


class _Loop:
    """The event loop thread of the blocking clients (started on first use)."""

    _lock = threading.Lock()
    _loop = None
    _pid = None

    @classmethod
    def get(cls):
        with cls._lock:
            # After os.fork() the child has the loop object but not its thread: start anew.
            if cls._loop is None or cls._loop.is_closed() or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="concoord-client", daemon=True
                )
                thread.start()
                cls._loop = loop
                cls._pid = os.getpid()
            return cls._loop

    @classmethod
    def run(cls, coro):
        """Runs ``coro`` on the loop thread and waits for it. Interrupting the wait (Ctrl-C)
        cancels the call."""
        loop = cls.get()
        if _in_loop_thread(loop):
            coro.close()
            raise RuntimeError("a blocking ConCoord call cannot run inside its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise


def _in_loop_thread(loop):
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


_open_clients = weakref.WeakSet()


def _close_soon(aio_client):
    loop = _Loop.get()
    if not loop.is_closed():
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(aio_client.close()))


@atexit.register
def _close_at_exit():
    # End the sessions now rather than leaving locks held until the lease runs out.
    for client in list(_open_clients):
        try:
            client.close()
        except Exception:
            pass


class Client:
    """A session with a ConCoord-rs group, for threads.

    ``addrs`` is ``"host:port, host:port"`` (any replicas; the leader is found through
    redirects) or the group's domain (SRV records ``_concoord._tcp.DOMAIN``;
    ``dns_server="127.0.0.1:15353"`` asks that nameserver). The session opens here: a
    :class:`concoord.ConnectionError` when no replica answers.

    ``timeout`` bounds ordinary calls, ``blocking_timeout`` the calls that wait for other
    clients (acquire, wait; default: no bound). ``ca`` (the group's CA certificate) connects
    over TLS, ``cert`` and ``key`` add a client certificate (also ``CONCOORD_CA``,
    ``CONCOORD_CERT``, ``CONCOORD_KEY``); ``tls_server_name`` is checked in the replicas'
    certificates instead of the host dialled. ``token`` (or ``CONCOORD_TOKEN``) proves who
    the client is to replicas with an auth file. The session is kept alive in the
    background; ``close()`` (or leaving ``with Client(...) as c:``) ends it and releases what
    it holds.
    """

    def __init__(self, addrs, *, timeout=30.0, blocking_timeout=None, connect_timeout=5.0,
                 keepalive_interval=1.0, keepalive_timeout=3.0, failover_timeout=30.0,
                 dns_server=None, token=None, debug=False, ca=None, cert=None, key=None,
                 tls_server_name=None):
        self._aio = aio.Client(
            addrs,
            timeout=timeout,
            blocking_timeout=blocking_timeout,
            connect_timeout=connect_timeout,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            failover_timeout=failover_timeout,
            dns_server=dns_server,
            token=token,
            debug=debug,
            ca=ca,
            cert=cert,
            key=key,
            tls_server_name=tls_server_name,
        )
        self._closed = False
        try:
            _Loop.run(self._aio.start())
        except BaseException:  # also Ctrl-C: do not leave a half-open session behind
            _Loop.run(self._aio.close())
            raise
        _open_clients.add(self)
        # A client dropped without close() still ends its session (and its locks) now,
        # not when the process exits or the lease runs out.
        self._finalizer = weakref.finalize(self, _close_soon, self._aio)

    def close(self):
        """Ends the session, releasing its locks and permits at once."""
        if self._closed:
            return
        self._closed = True
        _open_clients.discard(self)
        self._finalizer.detach()
        _Loop.run(self._aio.close())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def session(self):
        return self._aio.session

    def _run(self, coro):
        if self._closed:
            coro.close()
            raise ClientClosed("client closed")
        return _Loop.run(coro)

    def call(self, obj, method, *args, blocking=False, timeout=DEFAULT):
        """Calls ``method(*args)`` on the object named ``obj`` and returns its result."""
        return self._run(self._aio.call(obj, method, *args, blocking=blocking, timeout=timeout))

    def create(self, name, type_, *args):
        """Creates the object ``name`` of ``type_`` (``"Counter"``, ``"counter"``, the
        dotted ConCoord name or a proxy class) and returns its proxy."""
        self._run(self._aio.create(name, type_, *args))
        return self.object(name, type_)

    def delete(self, name):
        self._run(self._aio.delete(name))

    def list(self):
        """The group's objects: a dict from name to type name."""
        return self._run(self._aio.list())

    def object(self, name, type_=None):
        """A proxy of the right class for the object ``name`` of ``type_``; for a
        user-defined type (or no type), a proxy whose every attribute is a remote method."""
        cls = aio._proxy_class(type_)
        if cls is None:
            return UserObject(self, name)
        return SYNC[cls._spec.cls](client=self, name=name)

    def load_type(self, source, module, class_, replace=False):
        """Defines a user object type through consensus (see ``concoord type load``):
        Python ``source`` whose class ``class_`` becomes ``module.class_``; ``replace``
        swaps the code of a defined type, keeping its objects' state."""
        return self._run(self._aio.load_type(source, module, class_, replace))

    def types(self):
        """The user types: a list of dicts (name, sha256, size, methods, objects)."""
        return self._run(self._aio.types())

    def show_type(self, name):
        """One user type, with its source."""
        return self._run(self._aio.show_type(name))


class UserObject:
    """An object of a user-defined type: every public attribute is a method that calls the
    replicated object (``concoord object`` writes a proxy class with the real signatures)."""

    def __init__(self, client, name):
        self._client = client
        self._name = name

    @property
    def name(self):
        return self._name

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args):
            return self._client.call(self._name, method, *args)

        call.__name__ = method
        return call

    def __str__(self):
        return self._client.call(self._name, "__str__")

    def __repr__(self):
        return "<user object %r>" % (self._name,)


add_accessors(Client, SYNC)
