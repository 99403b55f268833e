"""Tokens and roles from Python (issue 14): ConCoord 1.1's security token, checked by replicas
that run with an auth file."""

import builtins
import hashlib
import time

import pytest

import concoord
import concoord.admin
import concoord.exceptions
from concoord.proxy.counter import Counter
from conftest import Cluster

ADMIN = "py-admin-token-1f2e3d4c5b6a"
APP = "py-app-token-9a8b7c6d5e4f"
READER = "py-reader-token-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory):
    auth = tmp_path_factory.mktemp("auth") / "auth"
    auth.write_text(
        "token operator admin %s\n"
        "token app client sha256:%s\n"
        "token dashboard readonly %s\n" % (ADMIN, hashlib.sha256(APP.encode()).hexdigest(), READER)
    )
    c = Cluster(3, extra=["--auth-file", str(auth)], token=ADMIN)
    yield c
    c.stop()


def test_without_a_token_or_with_a_wrong_one_the_client_is_refused_at_once(auth_cluster):
    for token in (None, "not-the-groups-token"):
        started = time.monotonic()
        with pytest.raises(concoord.exceptions.PermissionError) as e:
            concoord.Client(auth_cluster.addrs, token=token, failover_timeout=10)
        assert isinstance(e.value, builtins.PermissionError)
        assert "refused the connection" in str(e.value)
        assert time.monotonic() - started < 5


def test_each_role_may_do_what_it_names_and_refusals_change_nothing(auth_cluster, unique):
    name = unique("auth-counter")
    with concoord.Client(auth_cluster.addrs, token=ADMIN) as admin:
        admin.create(name, "Counter")
        with concoord.Client(auth_cluster.addrs, token=APP) as app:
            app.call(name, "increment")
            with pytest.raises(concoord.exceptions.PermissionError, match="needs role 'admin'"):
                app.create(unique("not-mine"), "Counter")
            with pytest.raises(PermissionError, match="needs role 'admin'"):
                app.delete(name)
        with concoord.Client(auth_cluster.addrs, token=READER) as reader:
            assert reader.call(name, "getvalue") == 1
            with pytest.raises(concoord.exceptions.PermissionError, match="needs role 'client'"):
                reader.call(name, "increment")
            assert name in reader.list()
        assert admin.call(name, "getvalue") == 1
        admin.delete(name)


def test_concoord_1_1_proxies_pass_the_token_and_the_environment_names_one(auth_cluster,
                                                                           monkeypatch):
    counter = Counter(auth_cluster.addrs, token=APP)
    try:
        before = counter.getvalue()
        counter.increment()
        assert counter.getvalue() == before + 1
    finally:
        counter.disconnect()
    monkeypatch.setenv("CONCOORD_TOKEN", READER)
    with concoord.Client(auth_cluster.addrs) as c:
        assert isinstance(c.call("counter", "getvalue"), int)
    assert concoord.admin.status(auth_cluster.addr(0))["view"]["members"]
    monkeypatch.delenv("CONCOORD_TOKEN")
    with pytest.raises(PermissionError):
        concoord.admin.status(auth_cluster.addr(0))
