"""Exceptions of the ConCoord-rs client.

Two families:

* errors of the client itself (:class:`ConCoordError` and its subclasses): no replica could
  be reached, a deadline passed, the session expired, the other side does not speak the
  protocol;
* errors raised by a replicated object's method (:class:`RemoteError`). Each carries the
  Python exception name the replica sent and is also an instance of the built-in of that
  name, so ``except KeyError:`` catches a remote ``KeyError`` and ``except queue.Empty:`` a
  remote ``Empty``. Kinds that are not Python built-ins (``Empty``, ``Full``,
  ``BrokenBarrierError``, ``SessionExpired`` ...) are defined here; a kind this module does
  not know gets a class of that name made on first use (a subclass of RemoteError).
"""

import builtins
import queue as _queue
import threading as _threading

__all__ = [
    "ConCoordError",
    "ConnectionError",
    "Timeout",
    "SessionExpired",
    "ProtocolError",
    "InvalidAddress",
    "ClientClosed",
    "RemoteError",
    "Empty",
    "Full",
    "BrokenBarrierError",
    "remote_error",
]


class ConCoordError(Exception):
    """Base class of the errors the client itself raises."""


class ConnectionError(ConCoordError, builtins.ConnectionError):
    """No replica could be reached (or none led the group) before the deadline.

    ``tried`` lists the addresses tried, ``reason`` the last failure.
    """

    def __init__(self, message, tried=(), reason=""):
        super().__init__(message)
        self.tried = list(tried)
        self.reason = reason


class Timeout(ConCoordError, builtins.TimeoutError):
    """No reply before the call's deadline. The call may still take effect."""


class SessionExpired(ConCoordError):
    """The session expired (the client was unreachable for longer than the lease), so the
    locks and permits it held were released. The client has opened a new session."""


class ProtocolError(ConCoordError):
    """The other side broke the protocol: not a ConCoord replica, a refused hello, a bad
    frame."""


class InvalidAddress(ConCoordError, builtins.ValueError):
    """An address list or domain that cannot be used."""


class ClientClosed(ConCoordError):
    """The client was closed."""


class RemoteError(Exception):
    """An exception raised by a replicated object's method, by name and message.

    ``str(e)`` is the replica's message as sent (``'x'`` for ``KeyError('x')``), so a remote
    error prints like the local one would.
    """

    kind = "RemoteError"

    def __init__(self, message=""):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


def _remote(kind, *bases):
    return type(kind, (RemoteError,) + bases, {"kind": kind, "__module__": __name__})


# Remote exceptions named like Python's built-ins are also those built-ins.
_BUILTIN_KINDS = (
    "KeyError",
    "ValueError",
    "RuntimeError",
    "IndexError",
    "TypeError",
    "AttributeError",
    "NameError",
    "PermissionError",
    "OverflowError",
    "ZeroDivisionError",
    "NotImplementedError",
    "AssertionError",
    "LookupError",
    "ArithmeticError",
    "MemoryError",
    "RecursionError",
    "StopIteration",
)

_KINDS = {}
for _kind in _BUILTIN_KINDS:
    _KINDS[_kind] = _remote(_kind, getattr(builtins, _kind))
    globals()[_kind] = _KINDS[_kind]

#: ``queue.Empty`` of the object (``Queue.get`` on an empty queue).
Empty = _KINDS["Empty"] = _remote("Empty", _queue.Empty)
#: ``queue.Full`` of the object (``Queue.put`` on a full queue).
Full = _KINDS["Full"] = _remote("Full", _queue.Full)
#: ``threading.BrokenBarrierError`` (a barrier reset or aborted while waiting).
BrokenBarrierError = _KINDS["BrokenBarrierError"] = _remote(
    "BrokenBarrierError", _threading.BrokenBarrierError
)


def remote_error(kind, message):
    """The exception instance for a remote error of this kind and message."""
    cls = _KINDS.get(kind)
    if cls is None:
        if not (isinstance(kind, str) and kind.isidentifier()):
            return RemoteError("%s: %s" % (kind, message))
        # A user-defined object may raise any of Python's exceptions (ImportError,
        # SyntaxError, ...): the remote one is also that built-in.
        builtin = getattr(builtins, kind, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception):
            cls = _KINDS[kind] = _remote(kind, builtin)
        else:
            cls = _KINDS[kind] = _remote(kind)
    return cls(message)
