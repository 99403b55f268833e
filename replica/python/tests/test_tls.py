"""TLS between the Python client and replicas that serve it (issue 14), with certificates
made by `concoord certs`."""

import os
import subprocess
import time

import pytest

import concoord
import concoord.admin
from conftest import Cluster, concoord_bin


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    subprocess.run([concoord_bin(), "certs", "init", d], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([concoord_bin(), "certs", "issue", d, "alice", "--client"], check=True,
                   stdout=subprocess.DEVNULL)
    return d


@pytest.fixture(scope="module")
def tls_cluster(pki):
    c = Cluster(3, pki=pki)
    yield c
    c.stop()


def test_calls_go_over_tls_with_and_without_a_client_certificate(pki, tls_cluster, unique):
    ca = os.path.join(pki, "ca.crt")
    name = unique("tls-counter")
    with concoord.Client(tls_cluster.addrs, ca=ca) as c:
        c.create(name, "Counter")
        c.call(name, "increment")
    with concoord.Client(tls_cluster.addrs, ca=ca, cert=os.path.join(pki, "alice.crt"),
                         key=os.path.join(pki, "alice.key")) as c:
        c.call(name, "increment")
        assert c.call(name, "getvalue") == 2
    status = concoord.admin.status(tls_cluster.addr(0), ca=ca)
    assert len(status["view"]["members"]) == 3


def test_the_environment_names_the_ca(pki, tls_cluster, monkeypatch):
    monkeypatch.setenv("CONCOORD_CA", os.path.join(pki, "ca.crt"))
    with concoord.Client(tls_cluster.addrs) as c:
        assert isinstance(c.call("counter", "getvalue"), int)


def test_a_plaintext_client_at_a_tls_replica_is_told_so(tls_cluster):
    started = time.monotonic()
    with pytest.raises(concoord.ConnectionError) as e:
        concoord.Client(tls_cluster.addrs, connect_timeout=3, failover_timeout=3)
    assert "serves TLS only" in str(e.value)
    assert time.monotonic() - started < 5


def test_a_tls_client_at_a_plaintext_replica_is_told_so(pki, cluster):
    started = time.monotonic()
    with pytest.raises(concoord.ConnectionError) as e:
        concoord.Client(cluster.addrs, ca=os.path.join(pki, "ca.crt"), connect_timeout=3,
                        failover_timeout=3)
    assert "TLS" in str(e.value)
    assert time.monotonic() - started < 5


def test_a_replica_from_another_ca_is_not_trusted(tmp_path, tls_cluster):
    other = str(tmp_path / "other")
    subprocess.run([concoord_bin(), "certs", "init", other], check=True,
                   stdout=subprocess.DEVNULL)
    with pytest.raises(concoord.ConnectionError) as e:
        concoord.Client(tls_cluster.addrs, ca=os.path.join(other, "ca.crt"), connect_timeout=3,
                        failover_timeout=3)
    assert "certificate" in str(e.value).lower()


def test_a_client_that_finds_the_group_by_srv_checks_the_published_names(pki):
    c = Cluster(3, domain="tls-srv.concoord", pki=pki)
    try:
        ca = os.path.join(pki, "ca.crt")
        server = "127.0.0.1:%d" % c.dns_ports[0]
        with concoord.Client("tls-srv.concoord", dns_server=server, ca=ca) as client:
            assert isinstance(client.call("counter", "increment"), (int, type(None)))
            assert client.call("counter", "getvalue") >= 1
    finally:
        c.stop()
