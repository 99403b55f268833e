"""The session engine against replicas that misbehave (a fake replica of the test's own,
speaking the framing of replica/PROTOCOL.md), and the failover paths that need them: every
wait is bounded, every address is tried, the group's other members are learned."""

import asyncio
import os
import socket
import struct
import threading
import time

import msgpack
import pytest

import concoord
import concoord.aio
from concoord import Client


class FakeReplica:
    """Accepts clients, welcomes them, then answers every frame with `answer(frame)` (a
    body to send, or None for silence)."""

    def __init__(self, answer):
        self.answer = answer
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            with conn:
                self._recv(conn)  # the hello
                self._send(conn, {"Accepted": {"version": 1, "replica": 9}})
                while True:
                    reply = self.answer(self._recv(conn))
                    if reply is not None:
                        self._send(conn, reply)
        except (OSError, ConnectionError, EOFError):
            return

    @staticmethod
    def _send(conn, body):
        data = msgpack.packb(body, use_bin_type=True)
        conn.sendall(struct.pack(">I", len(data)) + data)

    @staticmethod
    def _recv(conn):
        def exactly(n):
            buf = b""
            while len(buf) < n:
                chunk = conn.recv(n - len(buf))
                if not chunk:
                    raise EOFError
                buf += chunk
            return buf

        (n,) = struct.unpack(">I", exactly(4))
        return msgpack.unpackb(exactly(n), raw=False, strict_map_key=False)

    def close(self):
        self.listener.close()


def reply_to_requests(result):
    def answer(frame):
        if isinstance(frame, dict) and "Request" in frame:
            r = frame["Request"]
            return {"Reply": {"session": r["session"], "seq": r["seq"], "result": result}}
        return None

    return answer


def test_a_group_without_a_leader_fails_start_after_the_failover_timeout():
    fake = FakeReplica(reply_to_requests({"NotLeader": {"leader": None}}))
    try:
        start = time.monotonic()
        with pytest.raises(concoord.ConnectionError) as err:
            Client(fake.addr, failover_timeout=1.5)
        assert time.monotonic() - start < 10
        assert "no leader" in str(err.value)
        assert fake.connections >= 2, "it kept trying meanwhile"
    finally:
        fake.close()


def test_an_unavailable_replica_first_in_the_list_does_not_hide_the_leader(cluster):
    fake = FakeReplica(reply_to_requests({"Unavailable": {"reason": "removed from the view"}}))
    try:
        with Client("%s, %s" % (fake.addr, cluster.addr(0)), failover_timeout=20) as c:
            c.counter().increment()
    finally:
        fake.close()


def test_a_client_given_one_address_learns_the_others(fresh_cluster):
    group = fresh_cluster
    first = group.addr(0)
    with Client(first, timeout=30) as c:
        c.counter().increment()
        group.kill(0)  # founder, most likely the leader too
        group.leader()
        c.counter().increment()  # reached through an address it was never given
        assert c.counter().getvalue() == 2


def test_closing_an_async_client_while_it_starts_does_not_hang():
    silent = FakeReplica(lambda frame: None)

    async def main():
        c = concoord.aio.Client(silent.addr, failover_timeout=30)
        starting = asyncio.ensure_future(c.start())
        await asyncio.sleep(0.3)
        await asyncio.wait_for(c.close(), 5)
        with pytest.raises(concoord.ClientClosed):
            await asyncio.wait_for(starting, 5)

    try:
        asyncio.run(main())
    finally:
        silent.close()


def test_a_malformed_leader_hint_is_not_followed():
    fake = FakeReplica(reply_to_requests({"NotLeader": {"leader": "not an address"}}))
    try:
        with pytest.raises(concoord.ConnectionError):
            Client(fake.addr, failover_timeout=1.0)
    finally:
        fake.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_can_use_a_new_client(cluster, unique):
    name = unique("forked")
    with Client(cluster.addrs) as c:  # the parent's loop thread exists before the fork
        c.create(name, "Counter")
    pid = os.fork()
    if pid == 0:  # the child: exits with 0 only when its own client worked
        code = 1
        try:
            with Client(cluster.addrs, timeout=10) as child:
                child.counter(name).increment()
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    with Client(cluster.addrs) as c:
        assert c.counter(name).getvalue() == 1


def test_a_dropped_client_ends_its_session(cluster, unique):
    name = unique("dropped")
    c = Client(cluster.addrs)
    c.create(name, "Lock").acquire()
    del c  # no close(): the finalizer ends the session, so the lock is free at once
    with Client(cluster.addrs, blocking_timeout=1.5) as other:
        assert other.lock(name).acquire() is None
