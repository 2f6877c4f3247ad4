"""The bus's parts without a network: messages, URLs, dedup, the cache's coherence rules."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from microlib_kernel.bus import Bus, BusMessage, create_bus, redact
from microlib_kernel.domain.model import Model
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


def test_put_many_keeps_what_one_put_each_keeps() -> None:
    one, many = InstanceCache(3), InstanceCache(3)
    entries = [(f"o{i}", _inst(1)) for i in range(5)]
    for cache in (one, many):
        cache.put("orders", "x", _inst(1))
        cache.invalidate("orders", "o4", 2)  # a floor: o4 at revision 1 is refused
    for id, value in entries:
        one.put("orders", id, value)
    many.put_many("orders", entries)
    kept = [id for id in ("x", "o0", "o1", "o2", "o3", "o4") if many.get("orders", id)]
    assert kept == [id for id in ("x", "o0", "o1", "o2", "o3", "o4") if one.get("orders", id)]
    assert kept == ["o1", "o2", "o3"] and len(many) == 3
    many.suspend()
    many.put_many("orders", entries)
    assert len(many) == 0


class _Order(Model, endpoint="orders"):
    n: int = 0


class _Note(Model, endpoint="notes"):
    n: int = 0


def _model(cls: type[Model], id: str, n: int = 0, revision: int = 1) -> Model:
    return cls.model_validate({"id": id, "revision": revision, "n": n})


def test_cached_instances_are_keyed_by_their_own_id_and_share_one_order() -> None:
    cache = InstanceCache(3)
    a, b = _model(_Order, "a"), _model(_Note, "b")
    cache.put("orders", "a", a)
    cache.put("notes", "b", b)
    assert all(type(k) is str for k in cache._data)  # no (table, id) tuple per entry
    assert next(iter(cache._data)) is a.id  # the instance's own string is the key
    assert cache.get("orders", "a") is a and cache.get("notes", "b") is b
    assert cache.get("notes", "a") is None and cache.get("orders", "b") is None
    # One id in two tables: the second entry is keyed by the pair; both are found.
    twin = _model(_Note, "a", 7)
    cache.put("notes", "a", twin)
    assert cache.get("orders", "a") is a and cache.get("notes", "a") is twin
    assert cache.get_many("notes", ["a", "b", "zz"]) == [twin, b, None]
    # One order across tables: "orders/a" was used least recently of the three.
    cache.get("notes", "b")
    cache.get("notes", "a")
    cache.put("orders", "c", _model(_Order, "c"))
    assert cache.get("orders", "a") is None and cache.get("notes", "a") is twin
    assert len(cache) == 3


def test_evict_invalidate_and_clear_reach_either_kind_of_key() -> None:
    cache = InstanceCache(10)
    a, twin = _model(_Order, "a"), _model(_Note, "a")
    cache.put("orders", "a", a)
    cache.put("notes", "a", twin)  # keyed by the pair
    cache.evict("orders", "a")
    assert cache.get("orders", "a") is None and cache.get("notes", "a") is twin
    again = _model(_Note, "a", 2)
    cache.put("notes", "a", again)  # the id is free now: one entry, keyed by the id
    assert len(cache) == 1 and list(cache._data) == ["a"] and cache.get("notes", "a") is again
    cache.put("orders", "a", a)  # now the order is the one keyed by the pair
    cache.invalidate("orders", "a", 2)
    assert cache.get("orders", "a") is None and cache.get("notes", "a") is again
    cache.put("orders", "a", a)  # revision 1 < floor 2: refused
    assert cache.get("orders", "a") is None
    cache.put("orders", "b", _model(_Order, "b"))
    cache.put("orders", "a", _model(_Order, "a", revision=2))
    cache.clear("notes")
    assert cache.get("notes", "a") is None and cache.get("orders", "b") is not None
    assert cache.get("orders", "a") is not None and len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.get("orders", "b") is None


def test_a_value_under_another_table_than_its_models_is_keyed_by_the_pair() -> None:
    cache = InstanceCache(10)
    stray = _model(_Order, "x")
    cache.put("archive", "x", stray)
    assert list(cache._data) == [("archive", "x")]
    assert cache.get("archive", "x") is stray and cache.get("orders", "x") is None
    cache.put("orders", "x", stray)
    assert cache.get("orders", "x") is stray and len(cache) == 2
    cache.clear("archive")
    assert list(cache._data) == ["x"]


def test_a_newer_copy_from_another_models_class_replaces_the_id_keyed_one() -> None:
    # A version whose class names another endpoint, cached under the first table (the
    # review's case): the old id-keyed copy goes, so reads and invalidations see one.
    class _OrderV2(Model, endpoint="orders_v2"):
        n: int = 0

    cache = InstanceCache(10)
    cache.put("orders", "a", _model(_Order, "a", revision=1))
    newer = _model(_OrderV2, "a", 2, revision=2)
    cache.put("orders", "a", newer)
    assert cache.get("orders", "a") is newer and len(cache) == 1
    cache.invalidate("orders", "a", 3)
    assert cache.get("orders", "a") is None and len(cache) == 0


def test_get_many_is_get_of_each() -> None:
    cache = InstanceCache(3)
    for id in ("a", "b", "c"):
        cache.put("orders", id, _inst(1))
    hits, misses = cache.hits, cache.misses
    got = cache.get_many("orders", ["a", "zz", "c"])
    assert [g is not None for g in got] == [True, False, True]
    assert (cache.hits - hits, cache.misses - misses) == (2, 1)
    cache.put("orders", "d", _inst(1))  # "b" was used least recently: it goes
    assert cache.get("orders", "b") is None and cache.get("orders", "a") is not None
    cache.suspend()
    assert cache.get_many("orders", ["a", "c"]) == [None, None]


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


class FakeJetStream:
    """Just enough of nats-py's JetStream context for :meth:`NatsBus._subscribe`."""

    def __init__(self, first_seq: int, last_seq: int) -> None:
        self.state = SimpleNamespace(first_seq=first_seq, last_seq=last_seq)
        self.callbacks: list[object] = []
        self.starts: list[int] = []

    async def stream_info(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(state=self.state)

    async def subscribe(self, subject: str, *, cb: object, config: object, **_: object) -> object:
        self.callbacks.append(cb)
        self.starts.append(config.opt_start_seq)  # type: ignore[attr-defined]
        return SimpleNamespace(unsubscribe=_nothing)


async def _nothing() -> None:
    return None


def _nats_msg(seq: int) -> SimpleNamespace:
    body = BusMessage("changes", f"m{seq}", "a", {"table": "t", "id": str(seq)}).encode()
    return SimpleNamespace(
        data=body, metadata=SimpleNamespace(sequence=SimpleNamespace(stream=seq))
    )


@pytest.mark.anyio
async def test_nats_reports_messages_the_stream_discarded_before_delivery() -> None:
    from microlib_kernel.bus.nats import NatsBus

    bus = NatsBus("nats://127.0.0.1:1", cluster="c")
    got: list[str] = []
    gaps: list[None] = []

    async def handler(message: BusMessage) -> None:
        got.append(message.id)

    bus.subscribe("changes", handler)
    bus.on_gap(lambda: gaps.append(None))
    js = bus._js = FakeJetStream(first_seq=1, last_seq=10)
    await bus._subscribe()
    assert js.starts == [11]  # a new host starts after the last message
    deliver = js.callbacks[-1]
    for seq in (11, 12, 12, 15):  # 12 twice (a re-created consumer), 13-14 discarded
        await deliver(_nats_msg(seq))  # type: ignore[operator]
    assert got == ["m11", "m12", "m15"] and len(gaps) == 1 and bus.gaps == 1
    # Away (a reconnect) while the stream discarded everything up to 20: one more gap.
    js.state = SimpleNamespace(first_seq=21, last_seq=20)
    await bus._subscribe()
    assert js.starts[-1] == 21 and bus.gaps == 2
    await js.callbacks[-1](_nats_msg(21))  # type: ignore[operator]
    assert got[-1] == "m21" and bus.gaps == 2
    # Back without loss: no gap.
    js.state = SimpleNamespace(first_seq=5, last_seq=25)
    await bus._subscribe()
    assert js.starts[-1] == 22 and bus.gaps == 2


class FakeRedisInfo:
    """``XINFO STREAM`` answers for :meth:`RedisStreamsBus._missed`."""

    def __init__(self, added: int, length: int, first: str | None) -> None:
        self.info = {
            "entries-added": added,
            "length": length,
            "first-entry": (first.encode(), {}) if first else None,
        }

    async def xinfo_stream(self, key: str) -> dict[str, object]:
        return self.info


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("added", "length", "first", "batch", "missed"),
    [
        (20, 20, "1-0", (11, 20), 0),  # nothing trimmed
        (20, 10, "11-0", (11, 20), 0),  # trimmed up to what we had read (entry 10)
        (20, 8, "13-0", (11, 20), 0),  # also our batch's first two, after we read them
        (20, 7, "14-0", (14, 20), 3),  # 11-13 were gone before we read: the batch began at 14
        (30, 5, "26-0", (14, 23), 5),  # and 24-25, after our (count-limited) batch, are gone
        (30, 5, "26-0", (11, 20), 5),  # no gap before the batch, but 21-25 are gone unread
    ],
)
async def test_redis_counts_entries_trimmed_before_it_read_them(
    added: int, length: int, first: str, batch: tuple[int, int], missed: int
) -> None:
    from microlib_kernel.bus.redis import RedisStreamsBus

    bus = RedisStreamsBus("redis://127.0.0.1:1", cluster="c")
    bus._redis = FakeRedisInfo(added, length, first)
    bus._ordinal, bus._last_id = 10, "10-0"  # we had read entries 1..10 (ids n-0)
    entries = [(f"{n}-0".encode(), {}) for n in range(batch[0], batch[1] + 1)]
    assert await bus._missed(entries) == missed


def test_the_cache_answers_as_one_lru_of_table_and_id_whatever_the_puts() -> None:
    # Against a plain reference (one LRU keyed by (table, id)): bulk puts with repeats,
    # values under another table than their model's, gets, evictions, a small size.
    import random
    from collections import OrderedDict

    tables = {"orders": _Order, "notes": _Note}
    for seed in range(300):
        rng = random.Random(seed)
        cache, ref = InstanceCache(6), OrderedDict[tuple[str, str], Model]()
        for _ in range(40):
            table = rng.choice(list(tables))
            action = rng.random()
            if action < 0.5:
                entries = []
                for _ in range(rng.randint(1, 8)):
                    cls = (
                        tables[table] if rng.random() < 0.85 else rng.choice(list(tables.values()))
                    )
                    entries.append((rng.choice("abcdefgh"), cls))
                made = [(id, _model(cls, id, n=rng.randint(0, 9))) for id, cls in entries]
                cache.put_many(table, made)
                for id, value in made:
                    ref.pop((table, id), None)
                    ref[(table, id)] = value
                while len(ref) > 6:
                    ref.popitem(last=False)
            elif action < 0.8:
                id = rng.choice("abcdefgh")
                got = cache.get(table, id)
                assert got is ref.get((table, id)), (seed, table, id)
                if got is not None:
                    ref.move_to_end((table, id))
            else:
                id = rng.choice("abcdefgh")
                cache.evict(table, id)
                ref.pop((table, id), None)
            assert len(cache) == len(ref), seed
        for (table, id), value in ref.items():
            assert cache.get(table, id) is value, (seed, table, id)
