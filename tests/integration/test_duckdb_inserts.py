"""Creates are plain INSERTs in DuckDB group commits (no ON CONFLICT): still exact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microlib_kernel import Conflict, ValidationFailed
from microlib_kernel.config import Settings
from microlib_kernel.domain.query import Query
from microlib_kernel.domain.types import ValueType
from microlib_kernel.store import Column, DataSource, TableSchema, WriteOp, create_datasource
from microlib_kernel.store import duckdb as duckdb_store
from microlib_kernel.store.duckdb import DuckDBStore

pytestmark = pytest.mark.anyio

SCHEMA = TableSchema(
    "things",
    (
        Column("id", ValueType("string")),
        Column("revision", ValueType("integer"), 0, True),
        Column("name", ValueType("string")),
    ),
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[DataSource]:
    ds = create_datasource("duckdb:///inserts.duckdb", Settings.load(cwd=tmp_path, env={}))
    await ds.open()
    await ds.ensure_table(SCHEMA)
    yield ds
    await ds.close()


def create(id: str, name: str = "a") -> WriteOp:
    return WriteOp("upsert", "things", id, {"id": id, "revision": 1, "name": name}, 0)


async def test_a_create_of_an_existing_id_is_a_conflict_alone(store: DataSource) -> None:
    await store.write(create("a"))
    results = await asyncio.gather(
        store.write(create("b")),
        store.write(create("a", "again")),  # same group commit, fails alone
        store.write(create("c")),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Conflict) and "already exists" in results[1].message
    rows = await store.query("things", Query(order=(("id", False),)))
    assert [(r["id"], r["name"]) for r in rows] == [("a", "a"), ("b", "a"), ("c", "a")]


async def test_create_then_update_and_delete_then_create_in_one_commit(store: DataSource) -> None:
    await store.write(create("gone"))
    await asyncio.gather(
        store.write(create("x")),
        store.write(WriteOp("upsert", "things", "x", {"id": "x", "revision": 2, "name": "b"}, 1)),
        store.write(WriteOp("delete", "things", "gone")),
        store.write(create("gone", "reborn")),
    )
    rows = await store.query("things", Query(order=(("id", False),)))
    assert [(r["id"], r["revision"], r["name"]) for r in rows] == [
        ("gone", 1, "reborn"),
        ("x", 2, "b"),
    ]


async def test_delete_and_create_of_one_id_in_one_batch(store: DataSource) -> None:
    from microlib_kernel.store.duckdb import DuckDBStore

    assert isinstance(store, DuckDBStore)
    await store.write(create("gone"))
    ops = [WriteOp("delete", "things", "gone"), create("gone", "reborn")]
    cur = store._con.cursor()
    try:  # one batch, applied as the writer would: the create must not be a plain INSERT
        await asyncio.to_thread(store._apply, cur, ops)
    finally:
        cur.close()
    rows = await store.query("things", Query())
    assert [(r["id"], r["name"]) for r in rows] == [("gone", "reborn")]


async def test_a_write_alone_commits_on_the_callers_thread(store: DataSource) -> None:
    # Writer idle, nothing queued, no other write in this turn of the loop: the write
    # commits where it was made (no round trip to the writer thread), durably.
    assert isinstance(store, DuckDBStore)
    before = store.commits, store.direct_writes
    await store.write(create("a"))
    await store.write(WriteOp("upsert", "things", "a", {"id": "a", "revision": 2, "name": "b"}, 1))
    await store.write(WriteOp("delete", "things", "a", None, 2))
    await store.write(create("b"))
    assert (store.commits, store.direct_writes) == (before[0] + 4, before[1] + 4)
    assert [r["id"] for r in await store.query("things", Query())] == ["b"]
    # ...and fails there as the writer thread would make it fail.
    with pytest.raises(Conflict, match="already exists"):
        await store.write(create("b", "again"))
    assert store.direct_writes == before[1] + 5


async def test_writes_made_in_one_turn_commit_together_on_the_writer(store: DataSource) -> None:
    assert isinstance(store, DuckDBStore)
    before = store.commits, store.direct_writes
    await asyncio.gather(*(store.write(create(f"t{i}")) for i in range(5)))
    assert (store.commits, store.direct_writes) == (before[0] + 1, before[1])
    assert len(await store.query("things", Query())) == 5


async def test_no_write_commits_on_the_callers_thread_near_a_checkpoint(
    store: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DuckDB checkpoints in the commit that takes its log past the threshold: that
    # commit must not block the caller's event loop, so the writer thread makes it.
    assert isinstance(store, DuckDBStore)
    await store.write(create("a"))
    assert store._wal is not None and store._wal.exists()
    monkeypatch.setattr(duckdb_store, "CHECKPOINT_WAL_BYTES", store._wal.stat().st_size)
    direct = store.direct_writes
    await store.write(create("b"))
    assert store.direct_writes == direct
    assert len(await store.query("things", Query())) == 2


async def test_a_write_begun_before_close_commits(tmp_path: Path) -> None:
    settings = Settings.load(cwd=tmp_path, env={})
    ds = create_datasource("duckdb:///closing.duckdb", settings)
    await ds.open()
    await ds.ensure_table(SCHEMA)
    write = asyncio.ensure_future(ds.write(create("last")))
    await asyncio.sleep(0)  # the write is held for the rest of this turn
    await ds.close()
    await write  # acknowledged: committed before the store closed
    again = create_datasource("duckdb:///closing.duckdb", settings)
    await again.open()
    try:
        await again.ensure_table(SCHEMA)
        assert [r["id"] for r in await again.query("things", Query())] == ["last"]
    finally:
        await again.close()


async def test_a_large_row_commits_on_the_writer_thread(store: DataSource) -> None:
    # Its commit would hold the caller's loop ~10 ms per MiB: the writer makes it.
    assert isinstance(store, DuckDBStore)
    direct = store.direct_writes
    await store.write(WriteOp("upsert", "things", "big", {"id": "big", "name": "x" * 2**17}, 0))
    assert store.direct_writes == direct
    assert (await store.get("things", "big") or {}).get("name") == "x" * 2**17


async def test_writes_of_one_turn_commit_in_the_order_they_were_made(store: DataSource) -> None:
    await store.write(create("x"))
    update = {"id": "x", "revision": 2, "name": "second"}
    await asyncio.gather(
        store.write(WriteOp("upsert", "things", "x", {**update, "name": "first"}, 1)),
        store.write_many([WriteOp("upsert", "things", "x", update, None)]),
    )
    assert (await store.get("things", "x") or {}).get("name") == "second"


async def test_a_write_never_commits_ahead_of_a_batch_the_writer_has_taken(
    store: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The writer takes a batch from its queue before it takes the write lock: in
    # between, a write must not find the store idle and commit first.
    assert isinstance(store, DuckDBStore)
    taken = store._next_batch

    def slow_next_batch() -> tuple[list, bool]:
        batch = taken()
        time.sleep(0.05)
        return batch

    monkeypatch.setattr(store, "_next_batch", slow_next_batch)
    await store.write_many([create("x")])
    earlier = asyncio.ensure_future(
        store.write_many(
            [WriteOp("upsert", "things", "x", {"id": "x", "revision": 2, "name": "b"})]
        )
    )
    await asyncio.sleep(0.01)  # the writer holds that batch now
    await store.write(WriteOp("upsert", "things", "x", {"id": "x", "revision": 3, "name": "c"}))
    await earlier
    assert (await store.get("things", "x") or {}).get("name") == "c"


async def test_a_list_column_refuses_what_is_not_a_list(tmp_path: Path) -> None:
    ds = create_datasource("duckdb:///lists.duckdb", Settings.load(cwd=tmp_path, env={}))
    await ds.open()
    try:
        schema = TableSchema(
            "tagged",
            (
                Column("id", ValueType("string")),
                Column("tags", ValueType("list", item=ValueType("string"))),
                Column("counts", ValueType("list", item=ValueType("integer"))),
            ),
        )
        await ds.ensure_table(schema)
        for record in ({"tags": "[a, b]"}, {"counts": [2**200]}):
            with pytest.raises(ValidationFailed, match="cannot store"):
                await ds.write(WriteOp("upsert", "tagged", "t", {"id": "t", **record}, 0))
        await ds.write(WriteOp("upsert", "tagged", "t", {"id": "t", "tags": ["a"]}, 0))
        assert (await ds.get("tagged", "t") or {}).get("tags") == ["a"]
    finally:
        await ds.close()


async def test_a_create_alone_skips_the_optimizer_and_fails_cleanly(store: DataSource) -> None:
    # A create alone is one INSERT ... VALUES on a cursor of its own with DuckDB's
    # optimizer off; every other statement keeps the optimizer.
    assert isinstance(store, DuckDBStore)
    setting = "SELECT value FROM duckdb_settings() WHERE name = 'enable_optimizer'"
    assert store._row_cur.execute(setting).fetchone() == ("false",)
    assert store._write_cur.execute(setting).fetchone() == ("true",)
    before = store.direct_writes
    await store.write(create("a"))
    # A failed create alone (its id exists) leaves that cursor ready for the next one.
    with pytest.raises(Conflict, match="already exists"):
        await store.write(create("a", "again"))
    await store.write(create("b"))
    await store.write(WriteOp("upsert", "things", "b", {"id": "b", "revision": 2, "name": "B"}, 1))
    assert store.direct_writes - before == 4
    rows = await store.query("things", Query(order=(("id", False),)))
    assert [(r["id"], r["revision"], r["name"]) for r in rows] == [("a", 1, "a"), ("b", 2, "B")]


async def test_group_commits_bind_shared_values_once_and_store_each_row(tmp_path: Path) -> None:
    # The rows of one unnest INSERT that hold one value are bound once: the stored rows
    # are the same, updates included, and a shared value beyond BIGINT is still refused.
    from microlib_kernel import Host, Model

    class Pet(Model, endpoint="pets"):
        name: str
        age: int = 0
        note: str | None = None
        tags: list[str] = []

    host = Host(f"duckdb:///{tmp_path}/pets.duckdb")
    try:
        host.publish(Pet)
        made = await asyncio.gather(*[Pet.create(name="rex", tags=["a"]) for _ in range(20)])
        assert len({p.id for p in made}) == 20
        changed = await asyncio.gather(*[p.update(age=3) for p in made[:10]])
        rows = host.sql("SELECT name, age, note, tags, revision FROM pets ORDER BY age").rows
        assert rows == [("rex", 0, None, ["a"], 1)] * 10 + [("rex", 3, None, ["a"], 2)] * 10
        assert all(p.revision == 2 for p in changed)
        big = await asyncio.gather(*[Pet.create(name="x", age=2**70) for _ in range(3)],
                                   return_exceptions=True)  # fmt: skip
        assert all(isinstance(e, ValidationFailed) and "cannot store" in e.message for e in big)
        assert host.sql("SELECT count(*) FROM pets").rows == [(20,)]
    finally:
        host.close()


async def test_an_idle_writer_checkpoints_after_many_bulk_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bulk inserts log little, so DuckDB's own threshold may never checkpoint them: the
    # writer does once enough bulk rows are acknowledged and nothing else waits.
    from microlib_kernel import Host, Model

    monkeypatch.setattr(duckdb_store, "CHECKPOINT_BULK_ROWS", 500)

    class Note(Model, endpoint="notes"):
        text: str

    host = Host(f"duckdb:///{tmp_path}/notes.duckdb")
    try:
        host.publish(Note)
        store = host.repository("notes").store
        assert isinstance(store, DuckDBStore)
        await Note.create_many([{"text": f"t{i}"} for i in range(300)])
        assert store._bulk_rows == 300  # below the mark: no checkpoint yet
        await Note.create_many([{"text": f"u{i}"} for i in range(300)])
        deadline = time.monotonic() + 5
        while store._bulk_rows and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert store._bulk_rows == 0
        wal = tmp_path / "notes.duckdb.wal"
        assert not wal.exists() or wal.stat().st_size < 64 * 1024
        await Note.create(text="after")  # the store writes on
        assert await Note.count() == 601
    finally:
        host.close()
