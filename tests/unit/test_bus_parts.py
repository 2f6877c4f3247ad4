"""The bus's parts without a network: messages, URLs, dedup, the cache's coherence rules."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from microlib_kernel.bus import Bus, BusMessage, create_bus, redact
from microlib_kernel.errors import MicrolibError
from microlib_kernel.host.cluster import SeenIds, patterns
from microlib_kernel.store.cache import InstanceCache


def test_message_round_trip() -> None:
    msg = BusMessage("events", "e1", "node-a", {"name": "order.approved", "n": 1})
    assert BusMessage.decode(msg.encode()) == msg


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1,2]", b'{"topic":"events"}', b'{"topic":"e","id":"1","origin":"a","data":3}'],
)
def test_malformed_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        BusMessage.decode(raw)


def test_unknown_bus_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(MicrolibError, match=r"nats://.*redis://"):
        create_bus("kafka://localhost:9092")


def test_bus_urls_are_chosen_by_scheme() -> None:
    assert type(create_bus("nats://127.0.0.1:4222")).__name__ == "NatsBus"
    assert type(create_bus("redis://127.0.0.1:6379/0")).__name__ == "RedisStreamsBus"
    assert type(create_bus("memory://x")).__name__ == "MemoryBus"


def test_passwords_never_reach_health() -> None:
    assert redact("nats://user:s3cret@nats:4222") == "nats://user:***@nats:4222"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_seen_ids_drop_repeats_and_forget_the_oldest() -> None:
    seen = SeenIds(size=2)
    assert seen.add("a") and not seen.add("a")
    seen.add("b")
    seen.add("c")
    assert "a" not in seen and "c" in seen


def test_patterns_parse_a_comma_list() -> None:
    assert patterns(" order.*, ,payment.authorized ") == ("order.*", "payment.authorized")


def _inst(revision: int) -> SimpleNamespace:
    return SimpleNamespace(revision=revision)


def test_invalidate_evicts_and_refuses_older_copies() -> None:
    cache = InstanceCache(10)
    cache.put("orders", "o1", _inst(1))
    cache.invalidate("orders", "o1", 2)
    assert cache.get("orders", "o1") is None
    # A read that started before revision 2 was written finishes now: not cached.
    cache.put("orders", "o1", _inst(1))
    assert cache.get("orders", "o1") is None
    cache.put("orders", "o1", _inst(2))
    assert cache.get("orders", "o1").revision == 2


def test_a_remote_delete_keeps_the_id_out_of_the_cache() -> None:
    cache = InstanceCache(10)
    cache.put("orders", "o1", _inst(3))
    cache.invalidate("orders", "o1", None)
    cache.put("orders", "o1", _inst(3))
    assert cache.get("orders", "o1") is None


def test_a_suspended_cache_reads_through_and_resumes_empty() -> None:
    cache = InstanceCache(10)
    cache.put("orders", "o1", _inst(1))
    cache.suspend()
    assert cache.suspended and cache.get("orders", "o1") is None
    cache.put("orders", "o2", _inst(1))
    cache.resume()
    assert len(cache) == 0
    cache.put("orders", "o2", _inst(1))
    assert cache.get("orders", "o2") is not None


def test_a_floor_never_goes_down() -> None:
    cache = InstanceCache(10)
    cache.invalidate("orders", "o1", None)  # deleted
    cache.invalidate("orders", "o1", 3)  # a late message about an older write
    cache.put("orders", "o1", _inst(3))
    assert cache.get("orders", "o1") is None


class FlakyBus(Bus):
    """A bus whose connection stays up while its first publishes fail (a timeout)."""

    def __init__(self, failures: int) -> None:
        super().__init__("flaky://", outbox_limit=3)
        self.failures = failures
        self.delivered: list[str] = []

    async def _connect(self) -> None:
        self._set_connected(True)

    async def _send(self, message: BusMessage) -> None:
        if self.failures:
            self.failures -= 1
            raise TimeoutError("no acknowledgement")
        self.delivered.append(message.id)

    async def _alive(self) -> bool:
        return True

    async def _disconnect(self) -> None:
        return None


@pytest.mark.anyio
async def test_a_failed_publish_on_a_live_connection_recovers() -> None:
    bus = FlakyBus(failures=2)
    states: list[bool] = []
    bus.on_state(states.append)
    await bus.open()
    bus.publish("changes", "m1", "a", {})
    bus.publish("changes", "m2", "a", {})
    for _ in range(100):
        if bus.delivered == ["m1", "m2"]:
            break
        await asyncio.sleep(0.05)
    assert bus.delivered == ["m1", "m2"] and bus.connected
    assert states[:2] == [True, False] and states[-1] is True
    await bus.close()


@pytest.mark.anyio
async def test_an_overflowing_outbox_remembers_it_lost_messages() -> None:
    bus = FlakyBus(failures=0)
    for n in range(5):  # never opened: nothing is sent
        bus.publish("changes", f"m{n}", "a", {})
    assert bus.backlog == 3 and bus.dropped == 2 and bus.lost
