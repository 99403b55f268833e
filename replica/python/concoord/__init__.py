"""ConCoord-rs for Python: call Paxos-replicated objects like local ones.

The seed's API, module for module::

    from concoord.proxy.counter import Counter
    c = Counter("127.0.0.1:14000, 127.0.0.1:14001")
    c.increment()

and a client in the style of kazoo and python-etcd3::

    with concoord.Client("127.0.0.1:14000") as client:
        client.counter("hits").increment()
        with client.lock("config"):
            ...

``concoord.aio`` has the same client for asyncio.
"""

from .client import Client
from .exceptions import (
    BrokenBarrierError,
    ClientClosed,
    ConCoordError,
    ConnectionError,
    Empty,
    Full,
    InvalidAddress,
    ProtocolError,
    RemoteError,
    SessionExpired,
    Timeout,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
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
]
