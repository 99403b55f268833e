"""The seed's advanced tutorial, "ConCoordifying Python Objects": the user's own TenCounter
in /foo/tencounter.py, `concoord object -o tencounter.TenCounter` writing
/foo/tencounterproxy.py, `concoord replica -o tencounter.TenCounter` serving it, and the
generated proxy used exactly as the seed shows (the generated file is imported and run)."""

import importlib
import subprocess
import sys

import pytest

from conftest import Cluster, concoord_bin

# The seed's class, verbatim.
TEN_COUNTER = '''class TenCounter:
    def __init__(self, value=0):
        self.value = value

    def decrement(self):
        self.value -= 10

    def increment(self):
        self.value += 10

    def getvalue(self):
        return self.value

    def __str__(self):
        return "The counter value is %d" % self.value
'''


def concoord(*args, cwd=None, env=None):
    import os

    return subprocess.run([concoord_bin(), *args], cwd=cwd, capture_output=True, text=True,
                          env=None if env is None else dict(os.environ, **env))


def load(foo, module):
    sys.path.insert(0, str(foo))
    try:
        sys.modules.pop(module, None)
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(foo))


@pytest.fixture
def foo(tmp_path):
    d = tmp_path / "foo"
    d.mkdir()
    (d / "tencounter.py").write_text(TEN_COUNTER)
    return d


def test_seed_advanced_tutorial_with_the_generated_proxy(foo):
    env = {"PYTHONPATH": str(foo)}
    # $ concoord object -o tencounter.TenCounter
    out = concoord("object", "-o", "tencounter.TenCounter", env=env)
    assert out.returncode == 0, out.stderr
    assert (foo / "tencounterproxy.py").is_file()
    # $ concoord replica -o tencounter.TenCounter ... (and one joining replica)
    group = Cluster(2, object="tencounter.TenCounter", env=env)
    try:
        TenCounter = load(foo, "tencounterproxy").TenCounter
        c = TenCounter(group.addrs)
        assert c.increment() is None
        assert c.increment() is None
        assert c.getvalue() == 20
        assert str(c) == "The counter value is 20"
        assert c.decrement() is None
        assert c.getvalue() == 10
        # The seed's note: the original __init__ is __concoordinit__ on the proxy.
        assert c.__concoordinit__() is None
        c.increment()
        assert c.getvalue() == 10
        assert c.__concoordinit__(5) is None
        assert c.getvalue() == 5
        # Methods keep their names and parameters; a wrong call raises as Python would.
        with pytest.raises(TypeError):
            c.increment(1)
        # A second client sees the same object.
        other = TenCounter(group.addrs)
        assert other.getvalue() == 5
        other.disconnect()
        c.disconnect()
    finally:
        group.stop()


def test_blocking_proxies_and_parameters_with_defaults(foo, tmp_path):
    (foo / "stock.py").write_text('''class Stock:
    def __init__(self):
        self.items = {}

    def put(self, name, count=1):
        self.items[name] = self.items.get(name, 0) + count
        return self.items[name]

    def take(self, name, count=1):
        if self.items.get(name, 0) < count:
            raise ValueError("only %d %s left" % (self.items.get(name, 0), name))
        self.items[name] -= count
        return self.items[name]

    def names(self, *prefixes):
        return sorted(n for n in self.items if not prefixes or n.startswith(prefixes))
''')
    out = concoord("object", "-o", "%s:Stock" % (foo / "stock.py"), "-p", "1")
    assert out.returncode == 0, out.stderr
    group = Cluster(1, object="stock.Stock", env={"PYTHONPATH": str(foo)})
    try:
        Stock = load(foo, "stockproxy").Stock
        s = Stock(group.addrs)
        assert s.put("apple") == 1
        assert s.put("apple", 4) == 5
        assert s.put("pear", 2) == 2
        assert s.take("apple", 3) == 2
        with pytest.raises(ValueError, match="only 2 pear left"):
            s.take("pear", 3)
        assert s.names() == ["apple", "pear"]
        assert s.names("p") == ["pear"]
        s.disconnect()
    finally:
        group.stop()


def test_the_seeds_builtin_semaphore_proxy_from_concoord_object(tmp_path, cluster):
    # $ concoord object -o concoord.object.semaphore.Semaphore -p 1
    out = concoord("object", "-o", "concoord.object.semaphore.Semaphore", "-p", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    from concoord import Client

    with Client(cluster.addrs) as admin:
        if "semaphore" not in admin.list():
            admin.create("semaphore", "concoord.object.semaphore.Semaphore")
    Semaphore = load(tmp_path, "semaphoreproxy").Semaphore
    s = Semaphore(cluster.addrs)
    assert s.acquire() is True
    assert repr(s) == "<DSemaphore count=0>"
    assert s.release() is None
    s.disconnect()


def test_a_missing_module_or_batching_proxy_is_a_clear_error(tmp_path):
    out = concoord("object", "-o", "nowhere.Thing", cwd=tmp_path)
    assert out.returncode != 0
    assert "no module 'nowhere' (nowhere.py)" in out.stderr
    out = concoord("object", "-o", "counter", "-p", "2", cwd=tmp_path)
    assert out.returncode != 0
    assert "batching proxies" in out.stderr


def test_load_type_and_call_a_user_object_through_the_client(cluster, unique):
    import hashlib

    from concoord import Client

    with Client(cluster.addrs) as c:
        t = c.load_type(TEN_COUNTER, "tencounter", "TenCounter")
        assert t["name"] == "tencounter.TenCounter"
        assert t["sha256"] == hashlib.sha256(TEN_COUNTER.encode()).hexdigest()
        assert t["methods"] == ["decrement", "getvalue", "increment"]
        name = unique("ten")
        obj = c.create(name, "tencounter.TenCounter", 30)
        obj.increment()
        assert obj.getvalue() == 40
        assert str(obj) == "The counter value is 40"
        assert c.object(name).getvalue() == 40
        assert c.list()[name] == "TenCounter"
        listed = {x["name"]: x for x in c.types()}
        assert listed["tencounter.TenCounter"]["size"] == len(TEN_COUNTER)
        assert c.show_type("tencounter.TenCounter")["source"] == TEN_COUNTER
        with pytest.raises(SyntaxError):
            c.load_type("class TenCounter(:\n", "tencounter", "TenCounter", replace=True)
        assert obj.getvalue() == 40
        c.delete(name)
