"""SRV discovery through the replicas' nameserver, and bad input: clear exceptions, never a
hang."""

import socket
import threading
import time

import pytest

import concoord
from concoord import Client
from conftest import Cluster, free_ports


def test_srv_discovery_through_the_replica_nameserver():
    group = Cluster(3, domain="counterdomain.test")
    try:
        server = "127.0.0.1:%d" % group.dns_ports[1]
        with Client("counterdomain.test", dns_server=server) as c:
            c.counter().increment()
            assert c.counter().getvalue() >= 1
        from concoord.proxy.counter import Counter

        seed = Counter("counterdomain.test", dns_server=server)
        seed.increment()
        seed.disconnect()
    finally:
        group.stop()


def test_unknown_domain_is_a_clear_connection_error(cluster):
    dns_port = free_ports(1)[0]  # nothing listens there
    start = time.monotonic()
    with pytest.raises(concoord.ConnectionError) as err:
        Client("nothing.invalid", dns_server="127.0.0.1:%d" % dns_port, connect_timeout=1)
    assert "_concoord._tcp.nothing.invalid" in str(err.value)
    assert time.monotonic() - start < 15


def test_unreachable_addresses_fail_fast():
    ports = free_ports(2)
    addrs = "127.0.0.1:%d, 127.0.0.1:%d" % tuple(ports)
    start = time.monotonic()
    with pytest.raises(concoord.ConnectionError) as err:
        Client(addrs)
    assert "connection refused" in str(err.value)
    assert str(ports[0]) in str(err.value) and str(ports[1]) in str(err.value)
    assert time.monotonic() - start < 5
    from concoord.proxy.counter import Counter

    with pytest.raises(ConnectionError):  # also the built-in ConnectionError
        Counter(addrs)


def _serve(handler):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def loop():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return listener


def test_a_port_that_is_not_concoord_is_a_protocol_error():
    def http(conn):
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    def silent(conn):
        time.sleep(30)

    for handler in (http, silent):
        listener = _serve(handler)
        addr = "127.0.0.1:%d" % listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(concoord.ProtocolError) as err:
            Client(addr, connect_timeout=1.0)
        assert "not a ConCoord replica" in str(err.value)
        assert time.monotonic() - start < 5
        listener.close()


@pytest.mark.parametrize(
    "bad", ["", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "host:port", "a:1,,b:2", 14000]
)
def test_malformed_address_lists(bad):
    with pytest.raises(concoord.InvalidAddress):
        Client(bad)


def test_unknown_object_and_bad_arguments(cluster, unique):
    with Client(cluster.addrs) as c:
        with pytest.raises(NameError) as err:
            c.counter("no-such-object").increment()
        assert "no-such-object" in str(err.value)
        counter = c.create(unique("n"), "Counter")
        with pytest.raises(TypeError):
            counter.increment("not", "an", "argument")
        with pytest.raises(TypeError):
            c.create(unique("n"), "Counter", "five")
        with pytest.raises(TypeError):
            c.call(counter.name, "increment", object())
        # The client is still usable after every one of those.
        counter.increment()
        assert counter.getvalue() == 1


def test_calls_fail_after_the_failover_timeout_when_the_group_is_gone():
    group = Cluster(1)
    try:
        c = Client(group.addrs, failover_timeout=2.0)
        c.counter().increment()
        group.stop()
        start = time.monotonic()
        with pytest.raises(concoord.ConnectionError):
            c.counter().increment()
        assert time.monotonic() - start < 10
        c.close()
    finally:
        group.stop()
