"""concoord.aio: the same client as coroutines; many tasks share one session."""

import asyncio

import pytest

import concoord
import concoord.aio


def run(coro):
    return asyncio.run(coro)


def test_async_client_methods(cluster, unique):
    async def main():
        async with concoord.aio.Client(cluster.addrs) as c:
            name = unique("acount")
            counter = await c.create(name, "Counter", 1)
            await asyncio.gather(*(counter.increment() for _ in range(200)))
            assert await counter.getvalue() == 201
            assert await counter.str() == "The counter value is 201"
            assert (await c.list())[name] == "Counter"
            await counter.__concoordinit__(7)
            assert await c.counter(name).getvalue() == 7
            with pytest.raises(KeyError):
                await (await c.create(unique("ad"), "Dict")).delete("missing")
            await c.delete(name)
            with pytest.raises(NameError):
                await counter.getvalue()

    run(main())


def test_async_lock_between_two_sessions(cluster, unique):
    async def main():
        name = unique("alock")
        async with concoord.aio.Client(cluster.addrs) as a, concoord.aio.Client(
            cluster.addrs
        ) as b:
            lock = await a.create(name, "Lock")
            order = []
            async with lock:
                waiter = asyncio.ensure_future(b.lock(name).acquire())
                await asyncio.sleep(0.3)
                assert not waiter.done()
                order.append("released")
            assert await asyncio.wait_for(waiter, 10) is None  # granted
            order.append("acquired")
            assert order == ["released", "acquired"]
            with pytest.raises(concoord.Timeout):
                await a.lock(name).acquire(timeout=0.3)

    run(main())


def test_async_client_starts_on_first_call_and_fails_clearly(unique):
    async def main():
        from conftest import free_ports

        c = concoord.aio.Client("127.0.0.1:%d" % free_ports(1)[0])
        with pytest.raises(concoord.ConnectionError):
            await c.counter().increment()
        await c.close()

    run(main())
