"""The bulk paths on a real DuckDB file: they give exactly what the row-by-row paths give.

``create_many`` (one pydantic-core call, Arrow insert), single creates (one VALUES
insert), ``list`` (rows rendered as JSON by DuckDB) and the HTTP list cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import gc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field, field_validator

from microlib_kernel import Conflict, Host, Model, ValidationFailed
from microlib_kernel.domain.query import Query
from microlib_kernel.gc_pause import paused_gc
from microlib_kernel.host.bulk import share_fields_sets
from microlib_kernel.host.repository import Repository
from microlib_kernel.store import duckdb_bulk
from microlib_kernel.store.base import FreshInserts, Repeated, WriteOp
from microlib_kernel.store.duckdb import DuckDBStore

pytestmark = pytest.mark.anyio


class Address(BaseModel):
    street: str
    zip: int | None = None


def make_wide() -> type[Model]:
    class Wide(Model, endpoint="wides"):
        name: str
        qty: int = 0
        ratio: float = 0.0
        flag: bool = False
        when: dt.datetime | None = None
        day: dt.date | None = None
        at: dt.time | None = None
        amount: decimal.Decimal = decimal.Decimal("0")
        ref: uuid.UUID | None = None
        tags: list[str] = Field(default_factory=list)
        scores: list[int] = Field(default_factory=list)
        flags: list[bool] = Field(default_factory=list)
        extra: dict = Field(default_factory=dict)
        address: Address | None = None
        note: str | None = None

    return Wide


def wide_row(i: int) -> dict:
    return {
        "name": f"n{i} é\"'\\",
        "qty": i - 150,
        "ratio": i / 7 if i % 3 else 0.1 + 0.2,
        "flag": bool(i % 2),
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, i, tzinfo=dt.UTC) if i % 4 else None,
        "day": dt.date(2026, 1 + i % 12, 1 + i % 28),
        "at": dt.time(i % 24, i % 60, i % 60, 123),
        "amount": decimal.Decimal(f"{i}.{i:03d}"),
        "ref": uuid.UUID(int=i) if i % 5 else None,
        "tags": [f"t{j}" for j in range(i % 3)],
        "scores": list(range(i % 4)),
        "flags": [bool(j % 2) for j in range(i % 3)],
        "extra": {"k": i, "nested": [1, {"a": None}], "s": "ü"} if i % 2 else {},
        "address": {"street": f"s{i}", "zip": i} if i % 3 else None,
        "note": None if i % 2 else f"note {i}",
    }


async def test_create_many_and_list_round_trip_every_kind_of_field(
    host: Host, tmp_path: Path
) -> None:
    Wide = make_wide()
    host.publish(Wide)
    rows = [wide_row(i) for i in range(600)]  # more than ARROW_MIN_ROWS: the Arrow path
    made = await Wide.create_many(rows)
    assert [m.name for m in made] == [r["name"] for r in rows]
    assert len({m.created_at for m in made}) == 1  # one call, one instant
    listed = await Wide.list(order="qty")
    assert [m.model_dump() for m in listed] == [m.model_dump() for m in made]
    # The row-by-row read of the store gives the same instances as the JSON fast path.
    repo = host.repository("wides")
    mv = host.registry.get("Wide").pick()
    slow = [repo.materialize(mv, r) for r in await repo.store.query("wides", Query())]
    by_id = {m.id: m.model_dump() for m in slow}
    assert all(by_id[m.id] == m.model_dump() for m in listed)
    # SQL sees typed columns, and everything is there after a reopen (durable).
    got = host.sql("SELECT count(*), sum(qty), max(address.zip) FROM wides").rows
    assert got == [(600, sum(r["qty"] for r in rows), 599)]
    host.close()
    again = Host(host.settings.datasource)
    try:
        again.publish(make_wide())
        assert again.sql("SELECT count(*) FROM wides").rows == [(600,)]
    finally:
        again.close()


async def test_create_many_stores_columns_that_hold_one_value_in_every_row(host: Host) -> None:
    # The Arrow insert encodes such a column once; a column that differs only in the
    # middle row must not be taken for one.
    Wide = make_wide()
    host.publish(Wide)
    rows = [{**wide_row(i), "when": wide_row(1)["when"], "tags": ["x"], "extra": {}}
            for i in range(301)]  # fmt: skip
    rows[150]["extra"] = {"middle": True}
    await Wide.create_many(rows)
    repo = host.repository("wides")
    mv = host.registry.get("Wide").pick()
    # What the store holds, read row by row (a list here would answer from the cache).
    listed = [repo.materialize(mv, r) for r in await repo.store.query("wides", Query())]
    assert len(listed) == 301
    assert {m.when for m in listed} == {wide_row(1)["when"]}
    assert {tuple(m.tags) for m in listed} == {("x",)}
    assert [m.extra for m in listed if m.extra] == [{"middle": True}]


async def test_create_many_stores_empty_containers_once_and_other_values_each(
    host: Host,
) -> None:
    # An empty list or dict in every row is encoded once; one row that differs away
    # from the ends and the middle must keep its own value.
    Wide = make_wide()
    host.publish(Wide)
    rows = [{**wide_row(i), "tags": [], "extra": {}} for i in range(300)]
    rows[7]["extra"] = {"k": [1]}
    rows[8]["tags"] = ["y"]
    made = await Wide.create_many(rows)
    stored = {r["id"]: r for r in await host.repository("wides").store.query("wides", Query())}
    got = [stored[m.id] for m in made]
    assert [r["extra"] for r in got if r["extra"]] == [{"k": [1]}]
    assert [r["tags"] for r in got if r["tags"]] == [["y"]]
    assert sum(r["extra"] == {} and r["tags"] == [] for r in got) == 298
    assert {tuple(r["port_flow"]) for r in got} == {()}


async def test_fresh_inserts_go_in_as_one_group_and_an_existing_id_refuses_them_all(
    host: Host,
) -> None:
    Wide = make_wide()
    host.publish(Wide)
    made = await Wide.create_many([wide_row(i) for i in range(300)])
    store = host.repository("wides").store
    stored = await store.query("wides", Query())
    assert len(stored) == 300
    again = [dict(r, id=f"new-{n}") for n, r in enumerate(stored)]
    fresh = FreshInserts("wides", [r["id"] for r in again], again)
    # Read as a sequence (as stores other than DuckDB read it), it is one op per record.
    assert list(fresh)[7] == fresh[7] == WriteOp("upsert", "wides", "new-7", again[7], 0)
    assert fresh[-1].id == "new-299" and [op.id for op in fresh[1:3]] == ["new-1", "new-2"]
    await store.write_many(fresh)
    assert await store.count("wides", {}) == 600
    assert await store.get("wides", "new-7") == again[7]
    # One id that exists already: the whole group is refused, as any create of it.
    clash = [dict(r, id=f"more-{n}") for n, r in enumerate(stored)] + [dict(stored[0])]
    with pytest.raises(Conflict):
        await store.write_many(FreshInserts("wides", [r["id"] for r in clash], clash))
    assert await store.count("wides", {}) == 600
    assert {m.id for m in made} == {r["id"] for r in stored}


@pytest.mark.parametrize("rows", [10, 300])  # the unnest path and the Arrow path
async def test_create_many_stores_rows_whose_dumps_leave_fields_out(host: Host, rows: int) -> None:
    # A model's dump may leave a field out of some rows (exclude_if): each row keeps
    # what it has, whichever row comes first (a review caught the first FreshInserts
    # taking the first row's fields for all).
    class Tag(Model, endpoint="tags"):
        name: str = ""
        note: str | None = Field(None, exclude_if=lambda v: v is None)

    host.publish(Tag)
    for first_has_note in (False, True):
        data = [
            {"name": f"t{i}", **({"note": f"n{i}"} if (i % 2 == 0) == first_has_note else {})}
            for i in range(rows)
        ]
        made = await Tag.create_many(data)
        stored = {
            r["id"]: r.get("note")
            for r in await host.repository("tags").store.query("tags", Query())
        }
        assert [stored[m.id] for m in made] == [row.get("note") for row in data]


async def test_create_many_keeps_json_values_python_calls_equal(host: Host) -> None:
    # 1 == 1.0 == True in Python, not in JSON: each row keeps its own.
    Wide = make_wide()
    host.publish(Wide)
    rows = [{**wide_row(i), "extra": {"r": 1}} for i in range(300)]
    rows[0]["extra"] = {"r": 1.0}
    rows[150]["extra"] = {"r": True}
    made = await Wide.create_many(rows)
    stored = {
        r["id"]: r["extra"]["r"]
        for r in await host.repository("wides").store.query("wides", Query())
    }
    got = [stored[m.id] for m in made]
    assert [type(v) for v in got[:2]] == [float, int] and got[150] is True
    assert sum(type(v) is int for v in got) == 298


async def test_a_cancelled_list_is_cancelled_and_the_store_reads_on(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    from microlib_kernel.store import duckdb as duckdb_store

    monkeypatch.setattr(duckdb_store, "JSON_BATCH_ROWS", 7)
    Wide = make_wide()
    host.publish(Wide)
    await Wide.create_many([wide_row(i) for i in range(40)])
    host.close()
    again = Host(settings=host.settings)  # a new host: its lists read Arrow batches
    try:
        again.publish(make_wide())
        real = duckdb_store.json_rows_sql

        def slow(*args: object) -> tuple[str, list]:
            sql, params = real(*args)  # type: ignore[arg-type]
            # DuckDB busy for a while inside the read that the cancel lands in.
            busy = "(SELECT count(*) FROM range(400000000) WHERE range % 7 = 3) AS busy"
            return f"SELECT q.* FROM ({sql}) AS q, {busy}", params

        monkeypatch.setattr(duckdb_store, "json_rows_sql", slow)

        async def cancelled_list() -> bool:
            task = asyncio.ensure_future(again.repository("wides").list(
                again.registry.get("Wide").pick(), Query()))  # fmt: skip
            await asyncio.sleep(0.05)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return True
            return False

        assert await again.loop.call(cancelled_list)
        monkeypatch.setattr(duckdb_store, "json_rows_sql", real)
        # The read that was running closes its cursor when it ends; the store reads on.
        assert len(await again.loop.call(lambda: again.repository("wides").list(
            again.registry.get("Wide").pick(), Query()))) == 40  # fmt: skip
    finally:
        again.close()


async def test_lists_reuse_cached_copies_of_the_same_revision_only(host: Host) -> None:
    Wide = make_wide()
    host.publish(Wide)
    made = await Wide.create_many([wide_row(i) for i in range(400)])
    for m in made[:10]:
        host.cache.evict("wides", m.id)  # 10 of 400 missing: fetched by id
    old = made[20]
    new = await old.update(note="changed")
    host.cache.put("wides", old.id, old)  # a stale copy must not be served
    listed = await Wide.list(order="qty")
    assert [m.id for m in listed] == [m.id for m in made]
    assert listed[30] is made[30]  # the cached instance itself
    assert listed[20].note == "changed" and listed[20].revision == new.revision
    assert [m.model_dump() for m in listed[:10]] == [m.model_dump() for m in made[:10]]
    paged = await Wide.list(order="-qty", limit=5, offset=2)
    assert [m.id for m in paged] == [m.id for m in made[::-1][2:7]]


@pytest.fixture(params=["batches", "batches of 7 rows", "one array"])
def list_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How a new host's lists read DuckDB: Arrow batches (as shipped; small ones, so that
    every list spans several and the next is read while one is validated), or the one
    ``string_agg`` array that stores without batches, or without pyarrow, use."""
    if request.param == "batches of 7 rows":
        monkeypatch.setattr("microlib_kernel.store.duckdb.JSON_BATCH_ROWS", 7)
    elif request.param == "one array":
        monkeypatch.setattr(DuckDBStore, "json_batches", lambda self, *a: None)
    return str(request.param)


async def test_a_new_host_lists_through_json_arrays(
    host: Host, tmp_path: Path, list_path: str
) -> None:
    Wide = make_wide()
    host.publish(Wide)
    made = await Wide.create_many([wide_row(i) for i in range(300)])
    host.close()
    again = Host(settings=host.settings)
    try:
        Wide = make_wide()
        again.publish(Wide)
        repo = again.repository("wides")
        mv = again.registry.get("Wide").pick()
        assert not repo._cached_any  # nothing cached: the one-array path serves lists

        async def slow(**kw: object) -> list[dict]:
            query = Query(**kw)  # type: ignore[arg-type]
            return [
                repo.materialize(mv, r).model_dump() for r in await repo.store.query("wides", query)
            ]

        listed = await Wide.list(order="qty")
        assert [m.model_dump() for m in listed] == [m.model_dump() for m in made]
        assert [m.model_dump() for m in listed] == await slow(order=(("qty", False),))
        paged = await Wide.list(order="-qty", limit=5, offset=2)
        assert [m.id for m in paged] == [m.id for m in made[::-1][2:7]]
        tail = await Wide.list(order="qty", offset=295)
        assert [m.id for m in tail] == [m.id for m in made[295:]]
        # Exactly one and exactly two full batches of 7: the read after them finds none.
        for offset in (293, 286):
            full = await Wide.list(order="qty", offset=offset)
            assert [m.id for m in full] == [m.id for m in made[offset:]]
        assert await Wide.list(order="qty", limit=0) == []
        flagged = await Wide.list(flag=True, order="-ratio")
        assert [m.model_dump() for m in flagged] == await slow(
            filters={"flag": True}, order=(("ratio", True), ("id", False))
        )
        # Ties (half the rows share each flag) come out in id order, every time.
        tied = await Wide.list(order="flag")
        assert [m.id for m in tied] == [m.id for m in sorted(made, key=lambda m: (m.flag, m.id))]
        assert await Wide.list(name="nobody") == []
        assert not repo._cached_any  # a list caches nothing
    finally:
        again.close()


async def test_batches_stopped_early_close_their_cursor_even_after_the_store_closed(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("microlib_kernel.store.duckdb.JSON_BATCH_ROWS", 7)
    Wide = make_wide()
    host.publish(Wide)
    await Wide.create_many([wide_row(i) for i in range(40)])
    store = host.repository("wides").store
    fields = list(Wide.model_fields)

    async def first_batch() -> tuple[int, bytes]:
        batches = store.json_batches("wides", Query(), fields)
        assert batches is not None
        async with contextlib.aclosing(batches):
            async for got in batches:
                return got  # the next batch is being read: aclose waits for it
        raise AssertionError("no batch")

    count, text = await host.loop.call(first_batch)
    assert count == 7 and text.startswith(b"[{") and text.endswith(b"}]")

    async def stopped_after_close() -> None:
        batches = store.json_batches("wides", Query(), fields)
        assert batches is not None
        await batches.__anext__()
        store._readers.shutdown(wait=True)  # as store.close() does, mid-list
        await batches.aclose()  # no error: the cursor is closed here instead

    await host.loop.call(stopped_after_close)


def stricter_item() -> type[Model]:
    """``Item`` again, now refusing names shorter than 2 (a row ``x`` was stored before)."""

    class Item(Model, endpoint="items"):
        name: str

        @field_validator("name")
        @classmethod
        def long(cls, v: str) -> str:
            if len(v) < 2:
                raise ValueError("too short")
            return v

    return Item


async def test_a_new_host_lists_rows_a_stricter_version_rejects(
    host: Host, tmp_path: Path, list_path: str
) -> None:
    class Item(Model, endpoint="items"):
        name: str

    host.publish(Item)
    # With batches of 7, the rejected row is in the first of three batches: the list
    # stops there (the next batch is being read) and takes the row-by-row path.
    await Item.create_many([{"name": "a"}] + [{"name": f"ok{i}"} for i in range(20)])
    host.close()
    again = Host(settings=host.settings)
    try:
        Strict = stricter_item()
        again.publish(Strict)
        listed = await Strict.list(order="name")  # "a", the row it rejects, comes first
        assert [i.name for i in listed] == ["a", *sorted(f"ok{i}" for i in range(20))]
    finally:
        again.close()


async def test_single_creates_take_the_values_insert(host: Host) -> None:
    Wide = make_wide()
    host.publish(Wide)
    one = await Wide.create(**wide_row(7))
    assert (await Wide.find(one.id)).model_dump() == one.model_dump()
    host.cache.clear()
    assert [w.model_dump() for w in await Wide.list()] == [one.model_dump()]


async def test_single_creates_store_what_the_bulk_insert_stores(host: Host) -> None:
    # A create binds scalars, their text and lists of plain items with no CAST in its
    # statement (DuckDB casts on bind); the Arrow and unnest paths cast in SQL. The typed
    # columns hold the same values either way, None and empty lists included.
    Wide = make_wide()
    host.publish(Wide)
    rows = [wide_row(i) for i in range(12)]
    for row in rows:
        await Wide.create(**row)
    await Wide.create_many([{**row, "name": "bulk " + row["name"]} for row in rows * 30])
    names = [
        "qty",
        "ratio",
        "flag",
        "when",
        "day",
        "at",
        "amount",
        "ref",
        "tags",
        "scores",
        "flags",
        "extra",
        "address",
    ]
    columns = ", ".join(f'"{n}"' for n in names)
    one = host.sql(f"SELECT {columns} FROM wides WHERE name NOT LIKE 'bulk %' ORDER BY qty").rows
    bulk = host.sql(f"SELECT DISTINCT {columns} FROM wides WHERE name LIKE 'bulk %' ORDER BY qty")
    assert len(one) == 12
    assert one == bulk.rows
    assert {r[8] == [] for r in one} == {True, False}  # empty and non-empty lists both
    tags = host.sql('SELECT typeof(tags), typeof("when") FROM wides LIMIT 1').rows
    assert tags == [("VARCHAR[]", "TIMESTAMP WITH TIME ZONE")]


async def test_values_beyond_a_column_are_refused_clearly(host: Host) -> None:
    Wide = make_wide()
    host.publish(Wide)
    with pytest.raises(ValidationFailed, match="cannot store"):
        await Wide.create(name="big", qty=2**70)
    with pytest.raises(ValidationFailed, match="cannot store"):  # fails as it is bound
        await Wide.create(name="huge", qty=2**200)
    huge = await asyncio.gather(*[Wide.create(name=f"h{i}", qty=2**200) for i in range(3)],
                                return_exceptions=True)  # fmt: skip
    assert all(isinstance(e, ValidationFailed) for e in huge), huge
    rows = [wide_row(i) for i in range(300)]
    rows[123]["qty"] = 2**70  # Arrow cannot hold it: the batch falls back, then fails
    with pytest.raises(ValidationFailed, match="cannot store"):
        await Wide.create_many(rows)
    assert await Wide.count() == 0  # all or nothing


async def test_create_many_reports_the_first_invalid_row_like_create(host: Host) -> None:
    Wide = make_wide()
    host.publish(Wide)
    rows = [wide_row(i) for i in range(1500)]
    rows[700]["qty"] = "many"
    with pytest.raises(ValidationFailed) as many:
        await Wide.create_many(rows)
    with pytest.raises(ValidationFailed) as one:
        await Wide.create(**rows[700])
    assert many.value.errors == one.value.errors and many.value.message == one.value.message
    assert await Wide.count() == 0
    assert gc.isenabled()  # the pause ended with the failure


async def test_gathered_creates_validate_together_and_fail_alone(host: Host) -> None:
    Wide = make_wide()
    host.publish(Wide)
    rows = [wide_row(i) for i in range(400)]
    rows[10]["qty"] = "many"
    rows[20]["revision"] = 5  # a framework field
    rows[30]["id"] = "mine"
    got = await asyncio.gather(*[Wide.create(**r) for r in rows], return_exceptions=True)
    failed = [n for n, g in enumerate(got) if isinstance(g, BaseException)]
    assert failed == [10, 20, 30]
    with pytest.raises(ValidationFailed) as alone:
        await Wide.create(**rows[10])
    assert got[10].errors == alone.value.errors  # type: ignore[union-attr]
    assert await Wide.count() == 397
    host.cache.clear()
    stored = {w.id: w.model_dump() for w in await Wide.list()}
    assert all(stored[g.id] == g.model_dump() for g in got if isinstance(g, Model))


async def test_rows_a_stricter_version_rejects_are_still_listed(host: Host) -> None:
    class Item(Model, endpoint="items"):
        name: str

    host.publish(Item)
    await Item.create_many([{"name": "ok"}, {"name": "x"}])

    Strict = stricter_item()
    host.publish(Strict)
    host.cache.clear()
    names = sorted(i.name for i in await Strict.list())
    assert names == ["ok", "x"]  # the bulk validation failed; the row-by-row path kept both


async def test_lists_without_pyarrow_or_json_fall_back(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    Wide = make_wide()
    host.publish(Wide)
    monkeypatch.setattr(duckdb_bulk, "arrow", lambda: None)  # as without the arrow extra
    monkeypatch.setattr("microlib_kernel.store.duckdb.arrow", lambda: None)
    monkeypatch.setattr(duckdb_bulk, "json_row_expr", lambda columns, types: None)
    monkeypatch.setattr("microlib_kernel.store.duckdb.json_row_expr", lambda c, t: None)
    made = await Wide.create_many([wide_row(i) for i in range(300)])
    host.cache.clear()
    listed = await Wide.list(order="qty")
    assert [m.model_dump() for m in listed] == [m.model_dump() for m in made]


def test_paused_gc_nests_and_restores() -> None:
    assert gc.isenabled()
    with paused_gc(10):
        assert gc.isenabled()  # small bursts are left alone
    with paused_gc(5000):
        assert not gc.isenabled()
        with paused_gc(5000):
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc(5000):
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_instances_of_one_shape_share_one_fields_set() -> None:
    class Thing(Model, endpoint="things"):
        name: str
        qty: int = 0

    things = [Thing(name="a"), Thing(name="b"), Thing(name="c", qty=1), Thing(name="d")]
    before = [set(t.model_fields_set) for t in things]
    share_fields_sets(things)
    assert [set(t.model_fields_set) for t in things] == before  # what each says is unchanged
    sets = [t.__pydantic_fields_set__ for t in things]
    assert sets[0] is sets[1] is sets[3] and sets[2] is not sets[0]


def test_a_pause_moves_its_survivors_to_the_oldest_generation() -> None:
    class Marker:
        pass

    def in_oldest(obj: object) -> bool:
        return any(o is obj for o in gc.get_objects(generation=2))

    with paused_gc(5000):
        kept = Marker()
    # Not walked by the next young collection: it is old already, and the collector is on.
    assert in_oldest(kept) and gc.isenabled()
    # A program that froze objects itself keeps them frozen (unfreeze would thaw them).
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with paused_gc(5000):
            young = Marker()
        assert gc.get_freeze_count() == frozen and not in_oldest(young)
    finally:
        gc.unfreeze()


def test_a_pause_that_keeps_nothing_promotes_nothing() -> None:
    # The DuckDB writer's pause (its records die with the write): what another thread
    # made meanwhile, cycles included, stays young and is collected as usual.
    class Marker:
        pass

    def in_oldest(obj: object) -> bool:
        return any(o is obj for o in gc.get_objects(generation=2))

    with paused_gc(5000, promote=False):
        young = Marker()
    assert gc.isenabled() and not in_oldest(young)
    # Overlapping a pause that keeps what it makes, the burst is promoted when the
    # last pause ends, whichever ends last.
    with paused_gc(5000, promote=False):
        with paused_gc(5000):
            kept = Marker()
        assert not gc.isenabled()
    assert gc.isenabled() and in_oldest(kept)
    with paused_gc(5000, promote=False):
        later = Marker()
    assert not in_oldest(later)  # the request to promote does not outlive its pauses


# -- the HTTP list cache -----------------------------------------------------------------


NOTES = "/models/notes"


@pytest.fixture
def api(host: Host) -> Iterator[httpx.Client]:
    class Note(Model, endpoint="notes"):
        text: str
        n: int = 0

    host.publish(Note)
    url = host.serve(port=0)
    with httpx.Client(base_url=f"{url}{host.settings.api_root}", timeout=10) as c:
        yield c


def test_cached_lists_change_with_every_acknowledged_write(host: Host, api: httpx.Client) -> None:
    assert api.get(NOTES, params={"__limit": 5}).json() == []
    first = api.post(NOTES, json={"text": "a"}).json()
    seen = api.get(NOTES, params={"__limit": 5})
    assert [n["id"] for n in seen.json()] == [first["id"]]
    assert seen.headers["x-microlib-version"] == "1.0.0"
    lists = host.server.app.state.lists
    hits = lists.hits
    again = api.get(NOTES, params={"__limit": 5})
    assert again.content == seen.content and again.headers["content-type"] == "application/json"
    assert again.headers["x-microlib-version"] == "1.0.0" and lists.hits == hits + 1
    api.patch(f"{NOTES}/{first['id']}", json={"n": 3})
    assert api.get(NOTES, params={"__limit": 5}).json()[0]["n"] == 3
    api.delete(f"{NOTES}/{first['id']}")
    assert api.get(NOTES, params={"__limit": 5}).json() == []
    # Another process changed a row (cache coherence): the repository forgets, lists too.
    made = api.post(NOTES, json={"text": "b"}).json()
    assert len(api.get(NOTES).json()) == 1
    repo = host.repository("notes")
    before = repo.generation
    host.loop.run(_forget(repo, made["id"]))
    assert repo.generation == before + 1
    assert len(api.get(NOTES).json()) == 1


async def _forget(repo: Repository, id: str) -> None:
    repo.forget(id)


def test_each_version_and_query_has_its_own_cached_list(host: Host, api: httpx.Client) -> None:
    for i in range(3):
        api.post(NOTES, json={"text": f"t{i}", "n": i})
    asc = api.get(NOTES, params={"__order": "n"}).json()
    desc = api.get(NOTES, params={"__order": "-n"}).json()
    assert [n["n"] for n in asc] == [0, 1, 2] and [n["n"] for n in desc] == [2, 1, 0]
    assert api.get(NOTES, params={"__order": "nope"}).status_code == 400  # never cached

    class Note(Model, endpoint="notes"):
        text: str
        n: int = 0
        label: str = "new"

    host.publish(Note)
    latest = api.get(NOTES, params={"__order": "n"})
    assert latest.headers["x-microlib-version"] == "1.0.1"
    assert [n["label"] for n in latest.json()] == ["new"] * 3
    pinned = api.get(NOTES, params={"__order": "n"}, headers={"X-Microlib-Version": "1.0.0"})
    assert "label" not in pinned.json()[0]


async def test_a_before_validator_sees_a_port_flow_of_its_own_row(host: Host) -> None:
    from pydantic import model_validator

    class Seen(Model, endpoint="seens"):
        name: str

        @model_validator(mode="before")
        @classmethod
        def note(cls, data: Any) -> Any:
            data["port_flow"].append(f"seen:{data['name']}")
            return data

    host.publish(Seen)
    made = await Seen.create_many([{"name": n} for n in "abc"])
    assert [m.port_flow for m in made] == [["seen:a"], ["seen:b"], ["seen:c"]]


async def test_a_column_of_one_value_in_every_row_is_stored_exactly(host: Host) -> None:
    # The Arrow insert binds such a column once, as a parameter: every kind of value,
    # None included, must read back as each row's own dump.
    Wide = make_wide()
    host.publish(Wide)
    repo = host.repository("wides")
    mv = host.registry.get("Wide").pick()
    base = wide_row(5)  # a value in every field
    for data in ([{**base, "name": f"n{i}"} for i in range(300)],
                 [{"name": f"m{i}"} for i in range(300)]):  # fmt: skip
        made = await Wide.create_many(data)
        stored = {r["id"]: r for r in await repo.store.query("wides", Query())}
        for m in made:  # JSON text: 1, 1.0 and true differ (a decimal gets its column's scale)
            back = repo.materialize(mv, stored[m.id])
            assert back.model_dump_json(exclude={"amount"}) == m.model_dump_json(exclude={"amount"})
            assert back.amount == m.amount

    # One JSON value in every row keeps its JSON type (1, 1.0 and true are equal in Python).
    class Loose(Model, endpoint="looses"):
        anything: Any = None

    host.publish(Loose)
    for value in (1, 1.0, True, "1", None, {"k": [1.0]}):
        await Loose.create_many([{"anything": value}] * 300)
    got = host.sql("SELECT CAST(anything AS VARCHAR) AS v, count(*) FROM looses GROUP BY v").rows
    assert sorted(got, key=str) == sorted(
        [("1", 300), ("1.0", 300), ("true", 300), ('"1"', 300), (None, 300),
         ('{"k":[1.0]}', 300)], key=str)  # fmt: skip
    # A constant beyond BIGINT is refused as a varying one is, and nothing is written.
    with pytest.raises(ValidationFailed, match="cannot store"):
        await Wide.create_many([{**base, "name": f"b{i}", "qty": 2**70} for i in range(300)])
    assert await Wide.count() == 600


def test_one_value_is_one_object_or_equal_text_never_python_equality() -> None:
    one = duckdb_bulk._one_value
    varies = duckdb_bulk._VARIES
    assert one(["a", "a", "a"]) == "a" and one([None] * 3) is None and one([[], [], []]) == []
    assert one([1, True, 1]) is varies and one([1.0, 1, 1.0]) is varies  # 1 == 1.0 == True
    assert one([[], (), []]) is varies and one(["a", "b", "a"]) is varies
    big = int("9" * 30)
    assert one([big, big]) == big and one([big, int("9" * 30)]) is varies  # equal, not one
    assert one([]) is varies and one(Repeated(5, 2)) == 5


@pytest.mark.parametrize("rows", [10, 300])  # records, then columns into Arrow
async def test_create_many_fills_the_columns_of_other_versions_with_their_defaults(
    host: Host, rows: int
) -> None:
    class Note(Model, endpoint="notes"):
        text: str = ""
        legacy: str = "kept"
        level: int = 3
        share: float = 0.5
        flag: bool = True
        labels: list[str] = Field(default_factory=lambda: ["a"])
        weights: dict[str, int] = Field(default={"w": 1})

    host.publish(Note)

    class Note(Model, endpoint="notes"):  # type: ignore[no-redef]
        text: str = ""

    host.publish(Note)
    made = await Note.create_many([{"text": f"t{i}"} for i in range(rows)])
    got = host.sql("SELECT id, legacy, weights, level, share, flag FROM notes").rows
    assert {r[0] for r in got} == {m.id for m in made}
    assert {r[1:] for r in got} == {("kept", '{"w":1}', 3, 0.5, True)}


async def test_bulk_creates_carry_columns_only_to_a_store_that_reads_them(host: Host) -> None:
    # Records made from columns cost more than records made up front: a store that reads
    # records (or a listener) gets them up front, the same values either way.
    Wide = make_wide()
    host.publish(Wide)
    repo = host.repository("wides")
    mv = host.registry.get("Wide").pick()
    made = await Wide.create_many([wide_row(i) for i in range(300)])
    by_column = repo._fresh_inserts(mv, made, by_column=True)
    assert by_column.columns is not None
    for other in (repo._fresh_inserts(mv, made), FreshInserts("wides", [], [])):
        assert other.columns is None
    records = repo._fresh_inserts(mv, made).records
    assert records == by_column.records == [m.model_dump(mode="json") for m in made]
    repo.store.reads_columns = False  # type: ignore[misc]  # as the memory store
    assert repo._fresh_inserts(mv, made, by_column=True).columns is None
