"""Support for the proxies ``concoord object -o module.Class`` writes for user-defined
object types (Python classes the group runs in its sandbox).

A generated proxy is a subclass of :func:`proxy_base` with one method per public method of
the class; it is used like the built-in proxies: ``TenCounter("127.0.0.1:14000")`` opens a
session to the object named after the class, lower-cased (``name=`` picks another,
``client=`` shares a :class:`concoord.Client`).
"""

from ._proxies import ObjectProxy
from ._types import TypeSpec

#: A parameter the caller left out: the replica's method uses its own default.
NOARG = object()


def proxy_base(cls, methods, blocking=False):
    """The base class of a generated proxy for class ``cls`` with these ``methods``.
    ``blocking`` (``concoord object -p 1``): calls wait as long as the client's
    ``blocking_timeout`` allows rather than its call timeout."""
    spec = TypeSpec(
        cls,
        cls.lower(),
        methods,
        waits={m: None for m in methods} if blocking else None,
        doc="Proxy of the user-defined type %s." % cls,
    )
    return type(cls + "ProxyBase", (ObjectProxy,), {"_spec": spec, "__doc__": spec.doc})


def call_args(*values, rest=()):
    """The positional arguments of a call: trailing parameters the caller left out are not
    sent (so the replica applies the method's defaults), then any ``*args``."""
    values = list(values)
    while values and values[-1] is NOARG:
        values.pop()
    if any(v is NOARG for v in values):
        raise TypeError("a parameter was left out before one that was given")
    return tuple(values) + tuple(rest)
