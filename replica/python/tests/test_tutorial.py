"""The seed's tutorial, verbatim but for the ports: a group started the way the seed starts
it, the Counter proxy, __concoordinit__, and the Semaphore example of the threading
section."""

from conftest import Cluster


def test_seed_tutorial_counter_and_reinit():
    # $ concoord replica -o concoord.object.counter.Counter -a 127.0.0.1 -p 14000
    # $ concoord replica -o concoord.object.counter.Counter -b 127.0.0.1:14000 -a 127.0.0.1 -p 14001
    group = Cluster(2)
    try:
        addrs = "%s, %s" % (group.addr(0), group.addr(1))

        from concoord.proxy.counter import Counter

        c = Counter(addrs)
        assert c.increment() is None
        assert c.increment() is None
        assert c.getvalue() == 2

        c = Counter(addrs)
        c.increment()
        assert c.__concoordinit__() is None
        c.increment()
        assert c.getvalue() == 1
        assert str(c) == "The counter value is 1"
    finally:
        group.stop()


def test_seed_tutorial_semaphore(cluster):
    from concoord import Client
    from concoord.proxy.semaphore import Semaphore

    with Client(cluster.addrs) as admin:
        if "semaphore" not in admin.list():
            admin.create("semaphore", "concoord.object.semaphore.Semaphore")

    s = Semaphore(cluster.addrs)
    assert s.acquire() is True
    i = 10
    i += 5
    assert repr(s) == "<DSemaphore count=0>"
    assert s.release() is None
    assert repr(s) == "<DSemaphore count=1>"
    assert str(s) == "<DSemaphore object>"
    s.disconnect()


def test_seed_tutorial_lock(cluster):
    from concoord import Client
    from concoord.proxy.lock import Lock

    with Client(cluster.addrs) as admin:
        if "lock" not in admin.list():
            admin.create("lock", "Lock")
    lock = Lock(cluster.addrs)
    lock.acquire()
    assert repr(lock).startswith("<DLock owner=") and repr(lock) != "<DLock owner=None>"
    lock.release()
    assert repr(lock) == "<DLock owner=None>"
    lock.disconnect()
