"""The broker: glob and regex patterns, isolation, replacement by key, settle, streams."""

from __future__ import annotations

import asyncio
import logging
import re
import threading

import pytest

from microlib_kernel.domain.events import Event, EventBroker

pytestmark = pytest.mark.anyio


async def test_glob_patterns_match_whole_names() -> None:
    broker = EventBroker()
    seen: list[str] = []
    broker.on("order.*", lambda e: seen.append(e.name))
    broker.on(re.compile(r"^customer\."), lambda e: seen.append("re:" + e.name))
    for name in ("order.created", "order.undo.started", "orders.created", "customer.updated"):
        broker.publish(Event(name))
    await broker.settle()
    assert sorted(seen) == ["order.created", "order.undo.started", "re:customer.updated"]


async def test_async_and_sync_handlers_and_failures_are_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = EventBroker()
    seen: list[tuple[str, str]] = []

    async def good(e: Event) -> None:
        await asyncio.sleep(0.01)
        seen.append(("async", threading.current_thread().name))

    def sync_good(e: Event) -> None:
        seen.append(("sync", threading.current_thread().name))

    def bad(e: Event) -> None:
        raise RuntimeError("boom")

    broker.on("x", good)
    broker.on("x", bad)
    broker.on("x", sync_good)
    with caplog.at_level(logging.ERROR, "microlib_kernel.events"):
        broker.publish(Event("x"))
        await broker.settle()
    assert {k for k, _ in seen} == {"async", "sync"}
    loop_thread = threading.current_thread().name
    assert dict(seen)["sync"] != loop_thread  # sync handlers never block the loop
    assert "boom" in caplog.text


async def test_same_key_replaces_the_subscription() -> None:
    broker = EventBroker()
    seen: list[int] = []
    broker.on("x", lambda e: seen.append(1), key="k")
    broker.on("x", lambda e: seen.append(2), key="k")
    broker.publish(Event("x"))
    await broker.settle()
    assert seen == [2]
    assert len(broker.subscriptions()) == 1


async def test_off_owner_and_cancel() -> None:
    broker = EventBroker()
    seen: list[str] = []
    sub = broker.on("x", lambda e: seen.append("a"), owner="m")
    broker.on("x", lambda e: seen.append("b"), owner="m")
    broker.on("x", lambda e: seen.append("c"))
    assert broker.off_owner("m") == 2
    sub.cancel()
    broker.publish(Event("x"))
    await broker.settle()
    assert seen == ["c"]


async def test_event_shape_and_lazy_data() -> None:
    calls = []
    e = Event(
        "order.created",
        model="Order",
        model_id="1",
        data_factory=lambda: calls.append(1) or {"a": 1},
    )
    assert calls == []
    d = e.to_dict()
    assert set(d) == {"id", "name", "model", "model_id", "time", "data"}
    assert d["data"] == {"a": 1} and e.data == {"a": 1} and calls == [1]


async def test_recent_and_streams() -> None:
    broker = EventBroker(history=3)
    async with broker.stream("a.*", size=2) as stream:
        for n in ("a.1", "b.1", "a.2", "a.3", "a.4"):
            broker.publish(Event(n))
        assert [e.name for e in broker.recent()] == ["a.2", "a.3", "a.4"]
        assert [e.name for e in broker.recent("b.*")] == []
        assert stream.dropped == 2
        assert (await stream.next(1)).name == "a.3"  # type: ignore[union-attr]
        assert (await stream.next(1)).name == "a.4"  # type: ignore[union-attr]
        assert await stream.next(0.01) is None


async def test_settle_waits_for_chains() -> None:
    broker = EventBroker()
    done: list[str] = []

    async def first(e: Event) -> None:
        await asyncio.sleep(0.01)
        broker.publish(Event("second"))

    async def second(e: Event) -> None:
        await asyncio.sleep(0.01)
        done.append("second")

    broker.on("first", first)
    broker.on("second", second)
    broker.publish(Event("first"))
    await broker.settle()
    assert done == ["second"]


async def test_publish_many_is_publish_of_each_in_order() -> None:
    broker = EventBroker(history=3)
    seen: list[str] = []
    tapped: list[str] = []
    broker.on("order.*", lambda e: seen.append(e.model_id or ""))
    broker.on("order.created", lambda e: seen.append("exact:" + (e.model_id or "")))
    broker.tap(lambda e: tapped.append(e.model_id or ""))
    events = [Event("order.created", model_id=str(i)) for i in range(4)]
    async with broker.stream("order.*") as stream:
        broker.publish_many([*events, Event("customer.created", model_id="c")])
        streamed = [(await stream.next(1)) for _ in range(4)]
    await broker.settle()
    assert tapped == ["0", "1", "2", "3", "c"]
    assert [e.model_id for e in streamed if e] == ["0", "1", "2", "3"]
    assert sorted(seen) == sorted([str(i) for i in range(4)] + [f"exact:{i}" for i in range(4)])
    assert [e.model_id for e in broker.recent(n=0)] == ["2", "3", "c"]  # the ring's bound holds


def test_bad_subscriptions() -> None:
    broker = EventBroker()
    with pytest.raises(TypeError):
        broker.on("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        broker.on(5, print)  # type: ignore[arg-type]


async def test_publish_each_makes_only_what_someone_can_see() -> None:
    broker = EventBroker(history=3)
    made: list[int] = []

    def make(i: int) -> Event:
        made.append(i)
        return Event("order.created", model_id=str(i))

    # Nobody listens: only the ring of recent events sees them, and it keeps three.
    broker.publish_each("order.created", 10, make)
    assert made == [7, 8, 9]
    assert [e.model_id for e in broker.recent(n=0)] == ["7", "8", "9"]
    # A subscriber to another name changes nothing; one to this name sees every event.
    broker.on("customer.*", lambda e: None)
    made.clear()
    broker.publish_each("order.created", 5, make)
    assert made == [2, 3, 4]
    seen: list[str] = []
    broker.on("order.*", lambda e: seen.append(e.model_id or ""))
    made.clear()
    broker.publish_each("order.created", 5, make)
    await broker.settle()
    assert made == [0, 1, 2, 3, 4] and seen == ["0", "1", "2", "3", "4"]


async def test_publish_each_makes_every_event_for_taps_and_streams() -> None:
    tapped = EventBroker(history=2)
    got: list[str] = []
    tapped.tap(lambda e: got.append(e.model_id or ""))
    tapped.publish_each("order.created", 4, lambda i: Event("order.created", model_id=str(i)))
    assert got == ["0", "1", "2", "3"]
    streamed = EventBroker(history=2)
    async with streamed.stream("*") as stream:
        streamed.publish_each("order.created", 4, lambda i: Event("order.created", model_id=str(i)))
        names = [(await stream.next(1)) for _ in range(4)]
    assert [e.model_id for e in names if e] == ["0", "1", "2", "3"]


async def test_a_subscriber_arriving_while_events_are_made_gets_none_of_them() -> None:
    broker = EventBroker(history=3)
    seen: list[str] = []

    def make(i: int) -> Event:
        if i == 7:  # the first event made: another thread subscribes now
            thread = threading.Thread(
                target=lambda: broker.on("order.*", lambda e: seen.append(e.model_id or ""))
            )
            thread.start()
            thread.join()
        return Event("order.created", model_id=str(i))

    broker.publish_each("order.created", 10, make)
    await broker.settle()
    assert seen == []  # never a tail of the batch
    assert [e.model_id for e in broker.recent(n=0)] == ["7", "8", "9"]
    broker.publish_each("order.created", 2, lambda i: Event("order.created", model_id=f"n{i}"))
    await broker.settle()
    assert seen == ["n0", "n1"]
