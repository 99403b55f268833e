"""The modern API: concoord.Client, its proxies, create/delete/list, context managers,
errors as Python exceptions, many threads sharing one client."""

import queue
import threading

import pytest

import concoord
import concoord.proxy.counter
import concoord.proxy.dict
from concoord import Client
from concoord.exceptions import RemoteError


def test_create_list_call_delete(cluster, unique):
    name = unique("hits")
    with Client(cluster.addrs) as c:
        counter = c.create(name, "Counter", 5)
        assert isinstance(counter, concoord.proxy.counter.Counter)
        assert c.list()[name] == "Counter"
        counter.increment()
        assert counter.getvalue() == 6
        assert c.counter(name).getvalue() == 6
        # The same object through the seed's proxy class with name=.
        from concoord.proxy.counter import Counter

        seed = Counter(cluster.addrs, name=name)
        assert seed.getvalue() == 6
        seed.disconnect()
        c.delete(name)
        assert name not in c.list()
        with pytest.raises(NameError):
            counter.getvalue()


def test_type_names_accepted_by_create(cluster, unique):
    with Client(cluster.addrs) as c:
        for spelling in ("Dict", "dict", "concoord.object.dict.Dict", concoord.proxy.dict.Dict):
            name = unique("d")
            d = c.create(name, spelling)
            assert type(d).__name__ == "Dict"
        with pytest.raises(Exception) as err:
            c.create(unique("x"), "NoSuchType")
        assert "NoSuchType" in str(err.value)


def test_dict_methods(cluster, unique):
    with Client(cluster.addrs) as c:
        d = c.create(unique("cfg"), "Dict")
        assert d.get("a") is None
        d.set("a", {"nested": [1, 2.5, "x", None, True]})
        assert d.get("a") == {"nested": [1, 2.5, "x", None, True]}
        assert d.contains("a") is True
        assert d.cas("a", "wrong", 1) is False
        assert d.cas("a", {"nested": [1, 2.5, "x", None, True]}, 2) is True
        d.set("b", b"\x00bytes")
        assert d.get("b") == b"\x00bytes"
        assert sorted(d.keys()) == ["a", "b"]
        assert d.len() == 2
        d.delete("a")
        with pytest.raises(KeyError) as err:
            d.delete("a")
        assert isinstance(err.value, RemoteError)
        assert str(err.value) == "'a'"


def test_lock_context_manager_and_errors(cluster, unique):
    with Client(cluster.addrs) as c, Client(cluster.addrs) as other:
        name = unique("lock")
        lock = c.create(name, "Lock")
        with lock:
            assert lock.locked() is True
            # Another session cannot take it, nor release it.
            assert other.lock(name).acquire(blocking=False) is False
            with pytest.raises(RuntimeError) as err:
                other.lock(name).release()
            assert str(err.value) == "cannot release un-acquired lock"
        assert lock.locked() is False
        with pytest.raises(RuntimeError):
            lock.release()


def test_semaphore_context_manager(cluster, unique):
    with Client(cluster.addrs) as c:
        sem = c.create(unique("sem"), "Semaphore", 2)
        with sem:
            with sem:
                assert sem.acquire(blocking=False) is False
        assert sem.acquire(blocking=False) is True
        sem.release()
        bsem = c.create(unique("bsem"), "BoundedSemaphore", 1)
        with pytest.raises(ValueError) as err:
            bsem.release()
        assert "released too many times" in str(err.value)


def test_queue_empty_and_full_are_the_queue_module_exceptions(cluster, unique):
    with Client(cluster.addrs) as c:
        q = c.create(unique("q"), "Queue", 1)
        with pytest.raises(queue.Empty):
            q.get_nowait()
        q.put_nowait("a")
        with pytest.raises(queue.Full):
            q.put_nowait("b")
        assert q.get_nowait() == "a"


def test_wrong_arguments_are_type_errors(cluster, unique):
    with Client(cluster.addrs) as c:
        counter = c.create(unique("n"), "Counter")
        with pytest.raises(TypeError) as err:
            counter.increment(1, 2, 3)
        assert "takes" in str(err.value)
        with pytest.raises(AttributeError) as err:
            c.call(counter.name, "no_such_method")
        assert "no_such_method" in str(err.value)
        with pytest.raises(TypeError) as err:
            c.call(counter.name, "increment", {1, 2})
        assert "set" in str(err.value)


def test_many_threads_share_one_client(cluster, unique):
    with Client(cluster.addrs) as c:
        counter = c.create(unique("shared"), "Counter")
        errors = []

        def work():
            try:
                for _ in range(50):
                    counter.increment()
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert counter.getvalue() == 800


def test_close_releases_the_session_locks(cluster, unique):
    name = unique("lock")
    with Client(cluster.addrs) as c:
        c.create(name, "Lock").acquire()
    # Closing ended the session at once: the lock is free without waiting for the lease.
    with Client(cluster.addrs, blocking_timeout=1.5) as c:
        assert c.lock(name).acquire() is None  # granted (Lock.acquire returns None, as in 1.1)
    with pytest.raises(concoord.ClientClosed):
        c.lock(name).locked()
