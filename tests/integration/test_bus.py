"""Hosts joined by a bus: events forwarded between hosts, dedup, the down path.

Runs on the in-process ``memory://`` bus, and for real on the machine's NATS JetStream
and Redis (each test uses its own cluster name, so its own stream, and deletes it).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from microlib_kernel.domain.events import Event
from tests.services import NATS_URL, REDIS_URL, require, start_nats, stop_nats, wait_until


def _host(bus: str, cluster: str, node: str, **settings: Any) -> Host:
    return Host(
        "memory://",
        settings=Settings.load(bus=bus, bus_cluster=cluster, node=node, **settings),
    )


def _emit(host: Host, name: str, data: Any = None) -> Event:
    async def go() -> Event:
        return host.events.publish(Event(name, data, model="Order", model_id="o1"))

    return host.loop.run(go())


class Inbox:
    """Collects the events a host's broker hands to a subscriber."""

    def __init__(self, host: Host, pattern: str) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()
        host.events.on(pattern, self._got)

    async def _got(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def names(self) -> list[str]:
        with self._lock:
            return [e.name for e in self.events]


@pytest.fixture(params=["memory", "nats", "redis"])
def bus_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "nats":
        require("NATS", "127.0.0.1", 4222)
        yield NATS_URL
    elif request.param == "redis":
        require("Redis", "127.0.0.1", 6379)
        yield REDIS_URL
    else:
        yield f"memory://{uuid.uuid4().hex}"


@pytest.fixture
def cluster(bus_url: str) -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    _drop_cluster(bus_url, name)


def _drop_cluster(url: str, name: str) -> None:
    """Delete the test's stream (NATS) or stream key (Redis)."""

    async def drop() -> None:
        if url.startswith("nats://"):
            import nats

            nc = await nats.connect(url, connect_timeout=2)
            try:
                await nc.jetstream().delete_stream(f"MICROLIB_{name.upper()}")
            except Exception:
                pass
            await nc.close()
        elif url.startswith("redis://"):
            from redis.asyncio import Redis

            r = Redis.from_url(url)
            await r.delete(f"microlib:{name}:bus")
            await r.aclose()

    try:
        asyncio.run(drop())
    except OSError:
        pass  # the service is down (a test stopped it and failed): nothing to clean


def test_forwarded_events_reach_the_other_host_once(bus_url: str, cluster: str) -> None:
    a = _host(bus_url, cluster, "a", bus_forward="order.*")
    b = _host(bus_url, cluster, "b", bus_forward="order.*")
    try:
        seen_a, seen_b = Inbox(a, "order.*"), Inbox(b, "order.*")
        event = _emit(a, "order.approved", {"total": 10})
        _emit(a, "customer.created")  # not forwarded: no pattern matches
        wait_until(lambda: seen_b.names() == ["order.approved"], 10, "the event reaching b")
        got = seen_b.events[0]
        assert (got.id, got.model, got.model_id, got.data) == (
            event.id,
            "Order",
            "o1",
            {"total": 10},
        )
        a.loop.run(a.events.settle())
        b.loop.run(b.events.settle())
        # No echo: the event did not come back to a, nor did b send it on.
        assert seen_a.names() == ["order.approved"]
        assert b.cluster is not None and b.cluster.describe()["events_received"] == 1
        assert a.cluster is not None and a.cluster.describe()["events_forwarded"] == 1
    finally:
        a.close()
        b.close()


def test_a_repeated_message_is_delivered_once(bus_url: str, cluster: str) -> None:
    a = _host(bus_url, cluster, "a")
    b = _host(bus_url, cluster, "b")
    try:
        seen_b = Inbox(b, "*")
        body = Event("payment.authorized", {"n": 1}, id="ev-1").to_dict()
        assert a.cluster is not None and b.cluster is not None
        for _ in range(3):  # an outbox resending after a lost acknowledgement
            a.cluster.bus.publish("events", "ev-1", "a", body)
        # JetStream drops the repeats itself (same Nats-Msg-Id); the other buses deliver
        # them and the host drops them by event id.
        expect_dropped = 0 if bus_url.startswith("nats://") else 2
        wait_until(
            lambda: (
                seen_b.names() == ["payment.authorized"]
                and b.cluster.describe()["duplicates_dropped"] == expect_dropped
            ),
            10,
            "one delivery",
        )
        time.sleep(0.5)  # nothing more arrives
        assert seen_b.names() == ["payment.authorized"]
    finally:
        a.close()
        b.close()


def test_health_reports_the_bus(bus_url: str, cluster: str) -> None:
    a = _host(bus_url, cluster, "a", port=0)
    try:
        a.serve()
        body = httpx.get(f"{a.api_url}/health").json()
        assert body["status"] == "ok"
        assert body["bus"]["connected"] is True and body["bus"]["cache"] == "trusted"
        assert body["bus"]["node"] == "a"
    finally:
        a.close()


def test_bus_down_means_read_through_then_recovery() -> None:
    from microlib_kernel.bus.memory import MemoryHub

    url = f"memory://{uuid.uuid4().hex}"
    a = _host(url, "c", "a", bus_forward="*")
    b = _host(url, "c", "b")
    try:
        seen_b = Inbox(b, "*")
        hub = MemoryHub.named(f"{url.split('://')[1]}/c")
        hub.set_down(True)
        wait_until(lambda: b.cache.suspended and a.cache.suspended, 5, "caches suspended")
        assert b.cluster is not None and b.cluster.describe()["cache"] == "read-through"
        _emit(a, "order.shipped")  # queued in a's outbox while the bus is down
        assert a.cluster is not None
        wait_until(lambda: a.cluster.bus.backlog == 1, 5, "the outbox holding it")
        hub.set_down(False)
        wait_until(lambda: seen_b.names() == ["order.shipped"], 10, "delivery after recovery")
        # Each host notices the bus is back on its own reconnect: b may receive a's
        # message a moment before its own notice. It reads through until then (safe).
        wait_until(lambda: not b.cache.suspended, 5, "b trusting its cache again")
        assert b.cluster.describe()["cache"] == "trusted"
    finally:
        a.close()
        b.close()


def test_a_host_starts_while_the_bus_is_unreachable() -> None:
    # Nothing listens on port 1: the host starts, reads through, and says so.
    a = _host("nats://127.0.0.1:1", "c", "a")
    try:
        assert a.cluster is not None
        assert a.cluster.describe()["connected"] is False
        assert a.cache.suspended
    finally:
        a.close()


@pytest.mark.slow
def test_nats_outage_and_recovery() -> None:
    """Stop the real NATS server: hosts read through; events sent meanwhile arrive later."""
    require("NATS", "127.0.0.1", 4222)
    name = f"t{uuid.uuid4().hex[:10]}"
    a = _host(NATS_URL, name, "a", bus_forward="*")
    b = _host(NATS_URL, name, "b")
    try:
        seen_b = Inbox(b, "*")
        _emit(a, "order.created")
        wait_until(lambda: seen_b.names() == ["order.created"], 10, "delivery before")
        try:
            stop_nats()
            wait_until(lambda: b.cache.suspended and a.cache.suspended, 10, "caches suspended")
            _emit(a, "order.shipped")
        finally:
            start_nats()
        wait_until(lambda: not b.cache.suspended, 30, "b trusting its cache again")
        wait_until(
            lambda: seen_b.names() == ["order.created", "order.shipped"], 30, "delivery after"
        )
    finally:
        a.close()
        b.close()
        _drop_cluster(NATS_URL, name)


def test_a_host_that_lost_invalidations_clears_the_others_caches() -> None:
    url = f"memory://{uuid.uuid4().hex}"
    a = _host(url, "c", "a")
    b = _host(url, "c", "b")
    try:
        assert a.cluster is not None and b.cluster is not None
        b.cache.put("orders", "o1", SimpleNamespace(revision=1))
        a.cluster.bus.lost = True  # its outbox overflowed while it was cut off
        a.loop.loop.call_soon_threadsafe(a.cluster._on_bus_state, True)
        wait_until(lambda: len(b.cache) == 0, 5, "b dropping its cache")
        assert a.cluster.bus.lost is False
    finally:
        a.close()
        b.close()


def test_a_host_left_behind_by_a_trimmed_redis_stream_drops_its_cache() -> None:
    """The stream's MAXLEN trimmed entries b had not read yet: b must not trust its cache."""
    require("Redis", "127.0.0.1", 6379)
    name = f"t{uuid.uuid4().hex[:10]}"
    a = _host(REDIS_URL, name, "a")
    b = _host(REDIS_URL, name, "b")
    try:
        assert a.cluster is not None and b.cluster is not None
        bus_b = b.cluster.bus
        a.cluster.bus.maxlen = 5  # trimmed (approximately: whole nodes) as a goes on
        stalled = threading.Event()
        release: asyncio.Event = b.loop.run(_make_event())

        async def stall(message: Any) -> None:  # b is slow: its reader waits here
            stalled.set()
            await release.wait()

        async def add_stall() -> None:
            bus_b.subscribe("changes", stall)

        b.loop.run(add_stall())
        a.cluster.bus.publish("changes", "m0", "a", {"table": "other", "id": "x", "revision": 1})
        wait_until(stalled.is_set, 10, "b reading the first message")
        b.cache.put("orders", "o1", SimpleNamespace(revision=1))
        # The invalidation of o1 is among the entries trimmed before b reads them.
        a.cluster.bus.publish("changes", "m1", "a", {"table": "orders", "id": "o1", "revision": 2})
        for n in range(400):
            a.cluster.bus.publish("changes", f"n{n}", "a", {"table": "other", "id": str(n)})
        assert a.loop.run(a.cluster.bus.flush(10.0))
        assert _redis_first_entry(f"microlib:{name}:bus") != "m1"  # m1 was trimmed
        assert len(b.cache) == 1
        b.loop.loop.call_soon_threadsafe(release.set)
        wait_until(lambda: len(b.cache) == 0, 10, "b dropping its cache after the gap")
        assert bus_b.gaps == 1 and b.cluster.describe()["gaps"] == 1
    finally:
        a.close()
        b.close()
        _drop_cluster(REDIS_URL, name)


async def _make_event() -> asyncio.Event:
    return asyncio.Event()


def _redis_first_entry(key: str) -> str:
    """The bus message id of the oldest entry left in a Redis stream."""

    async def first() -> str:
        from redis.asyncio import Redis

        r = Redis.from_url(REDIS_URL)
        try:
            entries = await r.xrange(key, count=1)
            return str(json.loads(entries[0][1][b"m"])["id"])
        finally:
            await r.aclose()

    return asyncio.run(first())


def test_a_host_whose_nats_messages_were_discarded_drops_its_cache() -> None:
    """JetStream discarded (its limits) what b missed while away: b must not trust its cache."""
    require("NATS", "127.0.0.1", 4222)
    name = f"t{uuid.uuid4().hex[:10]}"
    a = _host(NATS_URL, name, "a")
    b = _host(NATS_URL, name, "b")
    try:
        assert a.cluster is not None and b.cluster is not None
        bus_b = b.cluster.bus

        async def away() -> None:  # what a lost connection does to b's consumer
            for sub in bus_b._subs:
                await sub.unsubscribe()

        b.loop.run(away())
        b.cache.put("orders", "o1", SimpleNamespace(revision=1))
        a.cluster.bus.publish("changes", "m1", "a", {"table": "orders", "id": "o1", "revision": 2})
        assert a.loop.run(a.cluster.bus.flush(10.0))
        _nats_discard_all(f"MICROLIB_{name.upper()}")  # as max_age would, while b was away
        b.loop.run(bus_b._subscribe())  # what b does when its connection is back
        wait_until(lambda: len(b.cache) == 0, 10, "b dropping its cache after the gap")
        assert bus_b.gaps == 1
        # The consumer goes on from the first message left: later ones still arrive.
        b.cache.put("orders", "o2", SimpleNamespace(revision=1))
        a.cluster.bus.publish("changes", "m2", "a", {"table": "orders", "id": "o2", "revision": 2})
        wait_until(lambda: len(b.cache) == 0, 10, "b hearing of the next write")
        assert bus_b.gaps == 1
    finally:
        a.close()
        b.close()
        _drop_cluster(NATS_URL, name)


def _nats_discard_all(stream: str) -> None:
    """Purge a JetStream stream: its first sequence moves past every message in it."""

    async def purge() -> None:
        import nats

        nc = await nats.connect(NATS_URL, connect_timeout=2)
        try:
            await nc.jetstream().purge_stream(stream)
        finally:
            await nc.close()

    asyncio.run(purge())
