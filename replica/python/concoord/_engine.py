"""The session engine shared by the blocking and the asyncio client.

One engine is one client session (replica/PROTOCOL.md, "Sessions and exactly-once"): it
keeps one connection to the leader, pipelines every call over it, renews the session's lease
in the background, follows ``NotLeader`` redirects, and after a broken connection or a leader
change reconnects and sends every call still in flight again with the same (session, seq),
so nothing is applied twice and parked blocking calls stay parked where they were.

Everything here runs on one asyncio event loop; no locks are needed.
"""

import asyncio
import logging
import random
import socket
import ssl
import time

from . import _wire
from ._discovery import check_addr
from .exceptions import (
    ClientClosed,
    ConnectionError,
    InvalidAddress,
    ProtocolError,
    PermissionError as RemotePermissionError,
    SessionExpired,
    Timeout,
    remote_error,
)

log = logging.getLogger("concoord")

#: Sentinel: use the engine's default deadline for this kind of call.
DEFAULT = object()

#: Redirects followed at once; after these (with no reply in between) the engine backs off.
QUICK_REDIRECTS = 3


class Options:
    """How a client times its calls, keep-alives and failover (seconds)."""

    def __init__(
        self,
        timeout=30.0,
        blocking_timeout=None,
        connect_timeout=5.0,
        keepalive_interval=1.0,
        keepalive_timeout=3.0,
        failover_timeout=30.0,
        backoff_min=0.1,
        backoff_max=2.0,
        tls=None,
        token=None,
        tls_server_name=None,
    ):
        #: Deadline of a non-blocking call; None waits forever.
        self.timeout = timeout
        #: Deadline of a blocking call (acquire, wait); None waits until granted, across
        #: leader changes. A blocking call that times out may still be granted later.
        self.blocking_timeout = blocking_timeout
        #: TCP connect plus handshake with one replica.
        self.connect_timeout = connect_timeout
        #: Lease renewal period (a quarter of the replicas' 10 s lease at most).
        self.keepalive_interval = keepalive_interval
        #: A connection silent this long while keep-alives go out is dropped (failover).
        self.keepalive_timeout = keepalive_timeout
        #: Calls fail with ConnectionError once no leader was reachable this long.
        self.failover_timeout = failover_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        #: An ssl.SSLContext for replicas that serve TLS; None speaks plaintext.
        self.tls = tls
        #: A bearer token for replicas with an auth file; None shows none.
        self.token = token
        #: The name the replicas' certificates carry, checked instead of the host dialled.
        self.tls_server_name = tls_server_name


class _Call:
    __slots__ = ("seq", "op", "future", "since")

    def __init__(self, seq, op, future):
        self.seq = seq
        self.op = op
        self.future = future
        self.since = time.monotonic()


class _Redirect(Exception):
    """The connected replica does not lead (or cannot serve): go elsewhere."""

    def __init__(self, hint, why):
        super().__init__(why)
        self.hint = hint


def _random_session():
    return random.SystemRandom().randrange(1, 2**64)


class Engine:
    def __init__(self, seeds, options):
        self._seeds = seeds
        self.options = options
        self._addrs = []
        self._hint = None
        self._session = None
        self._next_seq = 0
        self._calls = {}  # seq -> _Call, in flight (sent or queued)
        self._opened = False
        self._writer = None
        self._connected_to = None
        self._closed = False
        self._closing = False
        self._task = None
        self._started = None  # future: the first session opened (or why not)
        self._leaderless_since = None
        self._redirects = 0
        self._backoff = options.backoff_min
        self._cursor = 0  # where the next round of connection attempts starts in _addrs
        self._failures = []  # the last round's, for error messages
        self._last_heard = 0.0

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self):
        """Finds the group, connects and opens the session. Fails fast (ConnectionError,
        ProtocolError) when no replica of the list answers, and with ConnectionError when no
        leader opened the session within the failover timeout."""
        loop = asyncio.get_running_loop()
        self._addrs = await self._seeds.resolve()
        self._started = loop.create_future()
        self._task = loop.create_task(self._run())
        self._task.add_done_callback(self._on_engine_stopped)
        try:
            limit = self.options.failover_timeout
            await asyncio.wait_for(asyncio.shield(self._started), limit)
        except asyncio.TimeoutError:
            await self._stop_task()
            raise ConnectionError(
                "no leader opened a session within %gs (tried %s): %s"
                % (limit, ", ".join(self._addrs), "; ".join(self._failures[-3:]) or "no answer"),
                tried=self._addrs,
                reason=self._failures[-1] if self._failures else "",
            ) from None
        except BaseException:
            await self._stop_task()
            raise

    async def close(self):
        """Ends the session (its locks and permits are released at once) and disconnects."""
        if self._closed:
            return
        self._closing = True  # from here on, the end of the session is expected
        try:
            if self._opened and self._writer is not None:
                try:
                    await asyncio.wait_for(self._submit(_wire.CLOSE_SESSION), 1.0)
                except Exception:  # closing is best effort: the lease ends it anyway
                    pass
        finally:
            self._closed = True
            self._fail_all(ClientClosed("client closed"))
            await self._stop_task()

    async def _stop_task(self):
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        self._fail_start(ClientClosed("client closed"))
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # wait() neither raises the task's own cancellation nor swallows ours.
            await asyncio.wait([self._task])

    def _on_engine_stopped(self, task):
        """The connection task ended (closed, cancelled from outside, or a bug): nothing
        will answer the calls still waiting, so they fail now, and later ones at once."""
        self._closed = True
        error = ClientClosed("client closed")
        if not task.cancelled() and task.exception() is not None:
            error = ProtocolError("client engine failed: %r" % task.exception())
        self._fail_all(error)
        self._fail_start(error)

    def _fail_start(self, error):
        if self._started is not None and not self._started.done():
            self._started.set_exception(error)
            self._started.exception()  # retrieved: start() may be gone already

    @property
    def session(self):
        return self._session

    # ---- calls -----------------------------------------------------------------------

    async def request(self, op, what, timeout):
        """Runs one operation through consensus and returns its result."""
        if self._closed:
            raise ClientClosed("client closed")
        fut = self._submit(op)
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            self._abandon(fut)
            raise Timeout("no reply within %gs to %s" % (timeout, what)) from None
        except asyncio.CancelledError:
            self._abandon(fut)
            raise

    def _submit(self, op):
        op = _wire.encode_op(op)  # bad arguments fail here, before taking a seq
        fut = asyncio.get_running_loop().create_future()
        seq = self._next_seq
        self._next_seq += 1
        self._calls[seq] = _Call(seq, op, fut)
        if self._opened:
            self._send(seq)
        return fut

    def _abandon(self, fut):
        for seq, call in list(self._calls.items()):
            if call.future is fut:
                del self._calls[seq]
        if not fut.done():
            fut.cancel()

    def _ack(self):
        return min(self._calls) if self._calls else self._next_seq

    def _send(self, seq):
        call = self._calls.get(seq)
        if call is None or self._writer is None:
            return
        self._writer.write(_wire.request_frame(self._session, seq, self._ack(), call.op))

    def _resolve(self, seq, result):
        call = self._calls.pop(seq, None)
        if call is None or call.future is None or call.future.done():
            return
        if isinstance(result, BaseException):
            call.future.set_exception(result)
        else:
            call.future.set_result(result)

    def _fail_all(self, error):
        for seq in sorted(self._calls):
            call = self._calls.pop(seq)
            if call.future is not None and not call.future.done():
                call.future.set_exception(error)

    # ---- the connection loop -----------------------------------------------------------

    def _new_session(self):
        self._session = _random_session()
        self._next_seq = 0
        self._opened = False
        self._calls[0] = _Call(0, _wire.encode_op(_wire.OPEN_SESSION), None)
        self._next_seq = 1

    async def _run(self):
        first_round = True
        self._leaderless_since = time.monotonic()
        while not self._closed:
            try:
                try:
                    reader, failures = await self._connect_round()
                except RemotePermissionError as e:
                    # The credentials are wrong for every replica: retrying cannot help.
                    self._fail_start(e)
                    self._fail_all(e)
                    return
                if reader is None:
                    if first_round and self._seeds.domain is None:
                        self._start_failed(failures)
                        return
                    await self._wait_a_little(failures)
                    if self._seeds.domain is not None:
                        await self._rediscover()
                    continue
                first_round = False
                await self._serve(reader)
            except _Redirect as r:
                log.debug("redirected from %s: %s", self._connected_to, r)
                failure = "%s: %s" % (self._connected_to, r)
                # In a row, until a reply proves a leader: an election can bounce us
                # between replicas for a while, so only the first few are followed at once.
                self._redirects += 1
                if r.hint and _usable(r.hint):
                    self._hint = r.hint
                    if r.hint not in self._addrs:
                        self._addrs.append(r.hint)
                    if self._redirects > QUICK_REDIRECTS:
                        await self._wait_a_little([failure])
                else:
                    self._hint = None
                    self._skip(self._connected_to)
                    await self._wait_a_little([failure])
            except (OSError, asyncio.IncompleteReadError, ProtocolError) as e:
                log.debug("connection to %s lost: %s", self._connected_to, e)
                self._hint = None
                self._skip(self._connected_to)
                # Back off unless a leader answered since the last pause (_proven resets
                # it): a replica that accepts and drops us must not be hammered.
                await self._wait_a_little(["%s: %s" % (self._connected_to, _short(e))])
            if self._leaderless_since is None:
                self._leaderless_since = time.monotonic()

    async def _wait_a_little(self, failures):
        """After a failed attempt: give up the calls that waited too long, then pause
        (doubling up to backoff_max, with jitter)."""
        self._failures = (self._failures + list(failures))[-10:]
        self._give_up_overdue(failures)
        await self._pause(self._backoff)
        self._backoff = min(self._backoff * 2, self.options.backoff_max)

    def _proven(self):
        """A leader answered us: the failover clock, redirect count and back-off restart."""
        self._leaderless_since = None
        self._redirects = 0
        self._backoff = self.options.backoff_min

    def _skip(self, addr):
        """The next round starts after `addr` (it failed, or cannot serve us)."""
        if addr in self._addrs:
            self._cursor = (self._addrs.index(addr) + 1) % len(self._addrs)

    async def _pause(self, seconds):
        await asyncio.sleep(seconds * (0.5 + random.random() / 2))

    async def _rediscover(self):
        try:
            found = await self._seeds.resolve()
        except ConnectionError as e:
            log.debug("rediscovery of %s failed: %s", self._seeds.domain, e)
            return
        self._addrs = found

    def _start_failed(self, failures):
        tried = ", ".join(self._addrs)
        if failures and all("not a ConCoord replica" in f for f in failures):
            error = ProtocolError("no ConCoord replica at %s: %s" % (tried, "; ".join(failures)))
        else:
            error = ConnectionError(
                "cannot reach any replica (tried %s): %s" % (tried, "; ".join(failures)),
                tried=self._addrs,
                reason=failures[-1] if failures else "",
            )
        if self._started is not None and not self._started.done():
            self._started.set_exception(error)
        self._fail_all(error)

    def _give_up_overdue(self, failures):
        """Fails the calls that have waited for a leader longer than the failover timeout."""
        limit = self.options.failover_timeout
        if limit is None:
            return
        now = time.monotonic()
        since = self._leaderless_since or now
        for seq in sorted(self._calls):
            call = self._calls[seq]
            if call.future is None:
                continue
            if now - max(call.since, since) >= limit:
                del self._calls[seq]
                if not call.future.done():
                    call.future.set_exception(
                        ConnectionError(
                            "no leader reachable for %gs (tried %s): %s"
                            % (limit, ", ".join(self._addrs), "; ".join(failures[-3:])),
                            tried=self._addrs,
                            reason=failures[-1] if failures else "",
                        )
                    )

    async def _connect_round(self):
        """Tries the leader hint, then every known address once. Returns (reader, failures)."""
        order = []
        if self._hint:
            order.append(self._hint)
        n = len(self._addrs)
        rotated = [self._addrs[(self._cursor + i) % n] for i in range(n)]
        order += [a for a in rotated if a not in order]
        failures = []
        for addr in order:
            if self._closed:
                break
            try:
                reader = await self._connect(addr)
                if addr in self._addrs:
                    self._cursor = self._addrs.index(addr)
                return reader, failures
            except RemotePermissionError:
                raise
            except (
                OSError,
                ValueError,
                asyncio.TimeoutError,
                asyncio.IncompleteReadError,
                ProtocolError,
            ) as e:
                failures.append("%s: %s" % (addr, _describe_failure(e, self.options)))
            if addr == self._hint:
                self._hint = None
        return None, failures

    async def _connect(self, addr):
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        timeout = self.options.connect_timeout
        tls = self.options.tls
        opening = (
            asyncio.open_connection(
                host,
                int(port),
                ssl=tls,
                server_hostname=(
                    self.options.tls_server_name or self._seeds.published.get(addr) or host
                ),
            )
            if tls is not None
            else asyncio.open_connection(host, int(port))
        )
        reader, writer = await asyncio.wait_for(opening, timeout)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(_wire.pack(_wire.hello(self.options.token)))
            try:
                welcome = await asyncio.wait_for(_read_frame(reader), timeout)
            except asyncio.TimeoutError:
                raise ProtocolError(
                    "not a ConCoord replica (no answer to the hello within %gs)" % timeout
                ) from None
            except (asyncio.IncompleteReadError, ProtocolError) as e:
                raise ProtocolError("not a ConCoord replica (%s)" % _short(e)) from None
            _wire.welcome_replica(welcome)
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        self._connected_to = addr
        return reader

    def _drop_connection(self):
        if self._writer is not None:
            self._writer.close()
        self._writer = None

    async def _serve(self, reader):
        """Opens (or re-opens) the session, re-sends what is in flight, then reads replies
        until the connection breaks or the replica redirects us."""
        if self._session is None:
            self._new_session()
        self._last_heard = time.monotonic()
        # Learn every member's address from this replica's view (a client given one
        # address can fail over to the others), as the Rust client does.
        self._writer.write(_wire.pack(_wire.STATUS))
        self._send_in_flight()
        keepalive = asyncio.get_running_loop().create_task(self._keepalive())
        try:
            while True:
                frame = await _read_frame(reader)
                self._last_heard = time.monotonic()
                self._on_frame(frame)
        finally:
            keepalive.cancel()
            self._drop_connection()

    def _send_in_flight(self):
        if not self._opened:
            self._send(0)
            return
        for seq in sorted(self._calls):
            self._send(seq)

    async def _keepalive(self):
        interval = self.options.keepalive_interval
        while True:
            await asyncio.sleep(interval)
            if self._writer is None:
                return
            silent = time.monotonic() - self._last_heard
            if silent > self.options.keepalive_timeout:
                log.debug("%s silent for %.1fs: failing over", self._connected_to, silent)
                self._writer.close()
                return
            if self._opened and not self._closing:
                self._writer.write(_wire.pack(_wire.keepalive(self._session)))

    def _on_frame(self, frame):
        tag, data = _wire.variant(frame)
        if tag == "Reply" and isinstance(data, dict):
            if data.get("session") != self._session:
                return
            self._on_reply(data.get("seq"), data.get("result"))
        elif tag == "KeepAliveAck" and isinstance(data, dict):
            if data.get("session") == self._session:
                if data.get("alive") is False:
                    self._session_expired()
                else:
                    self._proven()
        elif tag == "Status" and isinstance(data, dict):
            self._learn_members(data.get("view"))
        elif tag == "NotLeader":
            hint = data.get("leader") if isinstance(data, dict) else None
            raise _Redirect(hint, "not the leader")
        # Status, membership and fault answers are not asked for by this engine.

    def _learn_members(self, view):
        if not isinstance(view, dict):
            return
        for key in ("members", "learners"):
            addrs = view.get(key)
            if isinstance(addrs, dict):
                for addr in addrs.values():
                    if isinstance(addr, str) and _usable(addr) and addr not in self._addrs:
                        self._addrs.append(addr)

    def _on_reply(self, seq, result):
        tag, data = _wire.variant(result)
        if tag in ("Ok", "Err"):
            self._proven()
        if tag == "Ok":
            if seq == 0 and not self._opened:
                self._calls.pop(0, None)
                self._opened = True
                if self._started is not None and not self._started.done():
                    self._started.set_result(None)
                self._send_in_flight()
            else:
                self._resolve(seq, data)
        elif tag == "Err":
            data = data if isinstance(data, dict) else {}
            if seq == 0 and not self._opened:
                error = ProtocolError("the replica refused to open a session: %s" % (data,))
                self._calls.pop(0, None)
                self._fail_all(error)
                if self._started is not None and not self._started.done():
                    self._started.set_exception(error)
                raise error
            self._resolve(seq, remote_error(str(data.get("kind")), str(data.get("message", ""))))
        elif tag == "NotLeader":
            hint = data.get("leader") if isinstance(data, dict) else None
            raise _Redirect(hint, "not the leader")
        elif tag == "Unavailable":
            reason = data.get("reason") if isinstance(data, dict) else data
            raise _Redirect(None, "unavailable: %s" % reason)
        elif tag == "SessionExpired":
            self._session_expired()
        else:
            raise ProtocolError("unknown reply %r" % (result,))

    def _session_expired(self):
        """The group dropped our session: what it held is gone. Fail the calls that were
        made in it and open a new one."""
        if self._closing:
            return  # we ended it ourselves (a keep-alive answered after CloseSession)
        log.warning("session %x expired; opening a new one", self._session or 0)
        self._fail_all(
            SessionExpired("the session expired and its locks and permits were released")
        )
        self._new_session()
        self._send(0)


async def _read_frame(reader):
    header = await reader.readexactly(4)
    body = await reader.readexactly(_wire.frame_length(header))
    return _wire.unpack(body)


def _usable(addr):
    """A leader hint or view address we can dial (never trust the network's text)."""
    try:
        check_addr(addr)
        return True
    except InvalidAddress:
        return False


def _short(e):
    text = str(e)
    if isinstance(e, asyncio.IncompleteReadError):
        return "the connection closed during the handshake"
    return text or type(e).__name__


def _describe_failure(e, options):
    if isinstance(e, asyncio.TimeoutError):
        return "no connection within %gs" % options.connect_timeout
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if options.tls is not None and isinstance(
        e, (ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)
    ) and not isinstance(e, ssl.SSLCertVerificationError):
        return "the TLS handshake failed (%s): the replica may not serve TLS" % _short(e)
    return _short(e)
