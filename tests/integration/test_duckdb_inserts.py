"""Creates are plain INSERTs in DuckDB group commits (no ON CONFLICT): still exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microlib_kernel import Conflict
from microlib_kernel.config import Settings
from microlib_kernel.domain.query import Query
from microlib_kernel.domain.types import ValueType
from microlib_kernel.store import Column, DataSource, TableSchema, WriteOp, create_datasource

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
