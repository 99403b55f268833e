"""Frames of the client protocol (replica/PROTOCOL.md): a 4-byte big-endian length, then
one MessagePack body shaped the way the replica's Rust types encode (structs as maps, enum
variants as a string or a one-entry map)."""

import struct

import msgpack

from .exceptions import ProtocolError, remote_error

PROTOCOL_VERSION = 1
MAGIC = "concoord"
#: The replica closes a connection that sends a larger frame.
MAX_FRAME = 16 * 1024 * 1024

_LENGTH = struct.Struct(">I")


def pack(body):
    """One frame: length prefix and body."""
    data = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_FRAME:
        raise ValueError("request of %d bytes is larger than a frame (16 MiB)" % len(data))
    return _LENGTH.pack(len(data)) + data


def frame_length(header):
    """The body length announced by a 4-byte header; refuses what no replica sends."""
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError("frame of %d bytes announced: not a ConCoord replica?" % length)
    return length


def unpack(body):
    """Decodes one frame body; bad bytes are a ProtocolError."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types
        raise ProtocolError("undecodable frame from the replica: %s" % e) from None


def hello(token=None):
    """The client's first frame; ``token`` proves who it is to replicas with an auth file."""
    frame = {"magic": MAGIC, "version": PROTOCOL_VERSION, "role": "Client"}
    if token:
        frame["token"] = token
    return frame


def welcome_replica(frame):
    """The replica id of an ``Accepted`` welcome; a ProtocolError for anything else."""
    if isinstance(frame, dict) and len(frame) == 1:
        (tag, data), = frame.items()
        if tag == "Accepted" and isinstance(data, dict):
            if data.get("version") != PROTOCOL_VERSION:
                raise ProtocolError("replica speaks protocol version %r" % data.get("version"))
            return data.get("replica")
        if tag == "Refused" and isinstance(data, dict):
            reason = str(data.get("reason"))
            # No credentials or the wrong ones: a PermissionError, as a refused call is.
            if reason.startswith("PermissionError: "):
                raise remote_error(
                    "PermissionError",
                    "the replica refused the connection: %s" % reason[len("PermissionError: "):],
                )
            raise ProtocolError("the replica refused the connection: %s" % reason)
    raise ProtocolError("unexpected answer to the hello: %r" % (frame,))


def encode_op(op):
    """The MessagePack of one operation, encoded once and re-sent as is. Arguments that
    MessagePack cannot carry are a TypeError that names them."""
    try:
        data = msgpack.packb(op, use_bin_type=True)
    except TypeError as e:
        raise TypeError(
            "cannot send %s: arguments must be None, bool, int, float, str, bytes, "
            "list/tuple or dict (%s)" % (_describe_op(op), e)
        ) from None
    except (OverflowError, ValueError) as e:
        raise ValueError("cannot send %s: %s" % (_describe_op(op), e)) from None
    if len(data) > MAX_FRAME - 128:
        raise ValueError("%s is %d bytes: larger than a frame (16 MiB)" % (_describe_op(op), len(data)))
    return data


def _describe_op(op):
    tag, data = variant(op)
    if tag == "Call":
        return "%s.%s()" % (data.get("object"), data.get("method"))
    return tag


def request_frame(session, seq, ack, op_bytes):
    """One framed ``{"Request": {"session", "seq", "ack", "op"}}`` around an encoded op."""
    body = b"".join(
        (
            b"\x81",
            msgpack.packb("Request"),
            b"\x84",
            msgpack.packb("session"),
            msgpack.packb(session),
            msgpack.packb("seq"),
            msgpack.packb(seq),
            msgpack.packb("ack"),
            msgpack.packb(ack),
            msgpack.packb("op"),
            op_bytes,
        )
    )
    return _LENGTH.pack(len(body)) + body


def keepalive(session):
    return {"KeepAlive": {"session": session}}


STATUS = "Status"
OPEN_SESSION = "OpenSession"
CLOSE_SESSION = "CloseSession"
LIST = "List"


def call_op(obj, method, args):
    return {"Call": {"object": obj, "method": method, "args": list(args)}}


def create_op(name, type_name, args):
    return {"Create": {"name": name, "type_name": type_name, "args": list(args)}}


def define_type_op(module, class_, source, replace):
    return {"DefineType": {"module": module, "class": class_, "source": source,
                           "replace": bool(replace)}}


LIST_TYPES = "ListTypes"


def show_type_op(name):
    return {"ShowType": {"name": name}}


def delete_op(name):
    return {"Delete": {"name": name}}


def variant(value):
    """Splits an enum value into (tag, data): ``"Status"`` -> ("Status", None),
    ``{"Ok": 5}`` -> ("Ok", 5)."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and len(value) == 1:
        (tag, data), = value.items()
        if isinstance(tag, str):
            return tag, data
    raise ProtocolError("malformed frame from the replica: %r" % (value,))
