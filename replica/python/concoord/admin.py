"""Questions any replica answers without a session: its status (replica/PROTOCOL.md,
"Status")."""

import os
import socket

from . import _discovery, _wire
from .aio import tls_context
from .exceptions import ProtocolError


def status(addr, timeout=2.0, ca=None, cert=None, key=None, token=None, tls_server_name=None):
    """The status report of the replica at ``addr`` ("host:port") as a dict: ``replica``,
    ``view`` (members, learners), ``leader``, ``is_leader``, ``decided_upto``, ...
    ``ca`` (and ``cert``, ``key``) as for :class:`concoord.Client`: over TLS; ``token`` (or
    ``CONCOORD_TOKEN``) for a replica with an auth file."""
    token = token or os.environ.get("CONCOORD_TOKEN") or None
    tls_server_name = tls_server_name or os.environ.get("CONCOORD_TLS_SERVER_NAME") or None
    _discovery.check_addr(addr)
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    tls = tls_context(ca, cert, key)
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        sock = raw if tls is None else tls.wrap_socket(raw, server_hostname=tls_server_name or host)
        sock.settimeout(timeout)
        _send(sock, _wire.hello(token))
        _wire.welcome_replica(_recv(sock))
        _send(sock, _wire.STATUS)
        tag, data = _wire.variant(_recv(sock))
        if tag != "Status" or not isinstance(data, dict):
            raise ProtocolError("unexpected answer to Status: %r" % tag)
        return data


def _send(sock, body):
    sock.sendall(_wire.pack(body))


def _recv(sock):
    header = _recv_exactly(sock, 4)
    return _wire.unpack(_recv_exactly(sock, _wire.frame_length(header)))


def _recv_exactly(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("the replica closed the connection")
        buf += chunk
    return bytes(buf)
