"""The DataSource contract: every registered store passes these tests.

The stores come from the registry (tests/datasource_support.py): memory, file, DuckDB
on disk, PostgreSQL on a throwaway database (tests/pg_support.py), and any store
registered later. Tests of optional behaviour say which capability they need.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microlib_kernel import Conflict, DatasourceError
from microlib_kernel.config import Settings
from microlib_kernel.domain.query import Query
from microlib_kernel.domain.types import ValueType
from microlib_kernel.store import Column, DataSource, TableSchema, WriteOp, create_datasource
from microlib_kernel.store.base import CAPABILITIES
from microlib_kernel.store.registry import datasource_class, register_datasource
from tests.datasource_support import registered_datasources, requires

pytestmark = pytest.mark.anyio

STR, INT, FLOAT = ValueType("string"), ValueType("integer"), ValueType("float")
TS = ValueType("timestamp")
NESTED = ValueType("struct", fields=(("city", STR), ("zip", INT)))
ITEMS = ValueType("list", item=ValueType("json"))

SCHEMA = TableSchema(
    "things",
    (
        Column("id", STR),
        Column("revision", INT, 0, True),
        Column("created_at", TS),
        Column("name", STR),
        Column("size", FLOAT, 0.0, True),
        Column("address", NESTED),
        Column("items", ITEMS, [], True),
    ),
)


def rec(i: int, **extra: object) -> dict:
    base = {
        "id": f"t{i:04d}",
        "revision": 1,
        "created_at": f"2024-01-01T00:00:{i % 60:02d}+00:00",
        "name": f"n{i % 3}",
        "size": float(i),
        "address": {"city": "Oslo", "zip": i},
        "items": [{"sku": "a", "qty": i}],
    }
    return base | extra


@pytest.fixture
async def store(datasource_url: str, tmp_path: Path) -> AsyncIterator[DataSource]:
    ds = create_datasource(datasource_url, Settings.load(cwd=tmp_path, env={}))
    await ds.open()
    try:
        await ds.ensure_table(SCHEMA)
        yield ds
    finally:
        await ds.close()


def test_every_registered_datasource_is_in_the_suite() -> None:
    """The suite can open each one and knows what it declares (none is left out)."""
    from tests.datasource_support import URL_FACTORIES

    found = registered_datasources()
    assert {"memory", "file", "duckdb", "postgresql"} <= {r.name for r in found}
    for r in found:
        assert r.cls is not None, f"{r.schemes}: the registry cannot tell the class"
        assert r.name in URL_FACTORIES, f"{r.name}: no URL factory in tests/datasource_support.py"
        assert r.capabilities <= CAPABILITIES, f"{r.name}: unknown capabilities"


async def test_declared_capabilities_match_what_the_store_does(store: DataSource) -> None:
    declared = type(store).capabilities
    assert ("sql" in declared) == (store.sql_engine() is not None)
    assert ("shared" in declared) == (not store.exclusive)
    assert ("shared" in declared) == (store.lease_store() is not None)


async def test_declared_revision_checks_match_what_the_store_does(store: DataSource) -> None:
    """A store that checks revisions must declare it, and one that declares it must."""
    await store.write(WriteOp("upsert", "things", "t0001", rec(1), expect_revision=0))
    await store.write(WriteOp("upsert", "things", "t0001", rec(1, revision=2), expect_revision=1))
    try:  # a stale update: written against revision 1, the row is at 2
        await store.write(
            WriteOp("upsert", "things", "t0001", rec(1, revision=2), expect_revision=1)
        )
        refused = False
    except Conflict:
        refused = True
    assert refused == ("checks_revisions" in type(store).capabilities)


async def test_declared_durability_matches_what_the_store_does(
    tmp_path: Path, store: DataSource
) -> None:
    """What a closed store wrote is there after reopening it exactly when it says durable."""
    await store.write(WriteOp("upsert", "things", "t0001", rec(1)))
    await store.close()
    again = create_datasource(store.url, Settings.load(cwd=tmp_path, env={}))
    await again.open()
    await again.ensure_table(SCHEMA)
    try:
        kept = await again.get("things", "t0001") is not None
    finally:
        await again.close()
    assert kept == ("durable" in type(store).capabilities)


async def test_write_then_read(store: DataSource) -> None:
    await store.write(WriteOp("upsert", "things", "t0001", rec(1)))
    got = await store.get("things", "t0001")
    assert got is not None
    assert got["name"] == "n1" and got["size"] == 1.0
    assert got["address"] == {"city": "Oslo", "zip": 1}
    assert got["items"] == [{"sku": "a", "qty": 1}]
    assert await store.get("things", "missing") is None
    assert await store.get("unknown_table", "t0001") is None


async def test_concurrent_writes_are_all_acknowledged(store: DataSource) -> None:
    await asyncio.gather(
        *[store.write(WriteOp("upsert", "things", f"t{i:04d}", rec(i))) for i in range(300)]
    )
    assert await store.count("things", {}) == 300
    assert len(await store.records("things")) == 300


async def test_write_many(store: DataSource) -> None:
    await store.write_many([WriteOp("upsert", "things", f"t{i:04d}", rec(i)) for i in range(50)])
    assert await store.count("things", {"name": "n1"}) == len([i for i in range(50) if i % 3 == 1])


async def test_query_filters_order_page(store: DataSource) -> None:
    await store.write_many([WriteOp("upsert", "things", f"t{i:04d}", rec(i)) for i in range(10)])
    rows = await store.query("things", Query({"name": "n0"}, (("size", True),)))
    assert [r["id"] for r in rows] == ["t0009", "t0006", "t0003", "t0000"]
    rows = await store.query("things", Query({}, (("size", False),), limit=3, offset=2))
    assert [r["id"] for r in rows] == ["t0002", "t0003", "t0004"]
    assert await store.query("things", Query({"size": 4.0})) == [await store.get("things", "t0004")]
    assert await store.count("things", {"name": "n1"}) == 3
    assert await store.query("unknown_table", Query()) == []


async def test_upsert_replaces_and_delete_removes(store: DataSource) -> None:
    await store.write(WriteOp("upsert", "things", "t0001", rec(1)))
    await store.write(WriteOp("upsert", "things", "t0001", rec(1, name="renamed", revision=2)))
    got = await store.get("things", "t0001")
    assert got is not None and got["name"] == "renamed" and got["revision"] == 2
    await store.write(WriteOp("delete", "things", "t0001"))
    assert await store.get("things", "t0001") is None
    assert await store.count("things", {}) == 0
    await store.write(WriteOp("delete", "things", "never-there"))  # deleting nothing is fine


async def test_last_write_wins_within_a_group(store: DataSource) -> None:
    ops = [WriteOp("upsert", "things", "t0001", rec(1, size=float(n))) for n in range(20)]
    await asyncio.gather(*[store.write(op) for op in ops])
    got = await store.get("things", "t0001")
    assert got is not None and got["size"] == 19.0


async def test_schema_growth_fills_defaults_and_keeps_removed_columns(store: DataSource) -> None:
    await store.write(WriteOp("upsert", "things", "t0001", rec(1)))
    grown = TableSchema(
        "things",
        (*(c for c in SCHEMA.columns if c.name != "size"), Column("colour", STR, "blue", True)),
    )
    change = await store.ensure_table(grown)
    assert change.added == ("colour",)
    got = await store.get("things", "t0001")
    assert got is not None and got["colour"] == "blue"
    # A write from the newer schema leaves the removed column's data in place.
    new = {k: v for k, v in rec(1, colour="red", revision=2).items() if k != "size"}
    await store.write(WriteOp("upsert", "things", "t0001", new))
    got = await store.get("things", "t0001")
    assert got is not None and got["colour"] == "red" and got["size"] == 1.0
    assert "colour" in await store.columns("things")


async def test_change_count_moves_with_writes(store: DataSource) -> None:
    before = store.change_count("things")
    await store.write(WriteOp("upsert", "things", "t0001", rec(1)))
    assert store.change_count("things") > before


@requires("checks_revisions")
async def test_the_store_checks_revisions(store: DataSource) -> None:
    await store.write(WriteOp("upsert", "things", "t0001", rec(1), expect_revision=0))
    with pytest.raises(Conflict):  # a second create of one id
        await store.write(
            WriteOp("upsert", "things", "t0001", rec(1, revision=2), expect_revision=0)
        )
    await store.write(WriteOp("upsert", "things", "t0001", rec(1, revision=2), expect_revision=1))
    with pytest.raises(Conflict):  # a stale update
        await store.write(
            WriteOp(
                "upsert", "things", "t0001", rec(1, name="stale", revision=2), expect_revision=1
            )
        )
    got = await store.get("things", "t0001")
    assert got is not None and got["revision"] == 2 and got["name"] == "n1"


@requires("sql")
async def test_the_sql_engine_reads_what_was_written(store: DataSource) -> None:
    await store.write_many([WriteOp("upsert", "things", f"t{i:04d}", rec(i)) for i in range(5)])
    engine = store.sql_engine()
    assert engine is not None
    result = await asyncio.to_thread(
        engine.execute, "SELECT count(*) AS n, max(size) AS top FROM things"
    )
    assert result.to_dicts() == [{"n": 5, "top": 4.0}]


@requires("durable")
async def test_persistence_across_reopen(tmp_path: Path, store: DataSource) -> None:
    await store.write_many([WriteOp("upsert", "things", f"t{i:04d}", rec(i)) for i in range(5)])
    await store.close()
    again = create_datasource(store.url, Settings.load(cwd=tmp_path, env={}))
    await again.open()
    await again.ensure_table(SCHEMA)
    try:
        assert await again.count("things", {}) == 5
        got = await again.get("things", "t0003")
        assert got is not None and got["address"] == {"city": "Oslo", "zip": 3}
    finally:
        await again.close()


def test_unknown_scheme_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DatasourceError, match=r"valid schemes: .*duckdb.*file.*memory"):
        create_datasource("mongodb://x", Settings.load(cwd=tmp_path, env={}))
    with pytest.raises(DatasourceError, match="not a URL"):
        create_datasource("just-a-path.duckdb", Settings.load(cwd=tmp_path, env={}))


def test_the_registry_tells_a_scheme_s_class_without_opening_one() -> None:
    from microlib_kernel.store import registry
    from microlib_kernel.store.memory import MemoryStore

    assert datasource_class("memory") is MemoryStore
    assert datasource_class("postgres") is datasource_class("POSTGRESQL") is not None
    register_datasource("plainfn", lambda url, settings: MemoryStore(url))
    try:
        assert datasource_class("plainfn") is None  # a function does not say what it makes
    finally:
        registry._FACTORIES.pop("plainfn", None)
    with pytest.raises(DatasourceError, match=r"valid schemes: .*duckdb"):
        datasource_class("mongodb")


async def test_file_store_never_leaves_its_folder(tmp_path: Path) -> None:
    ds = create_datasource("file:///docs", Settings.load(cwd=tmp_path, env={}))
    await ds.open()
    await ds.ensure_table(SCHEMA)
    for bad in ("../escape", "a/b", "..", "/etc/passwd"):
        with pytest.raises(DatasourceError, match="unsafe"):
            await ds.write(WriteOp("upsert", "things", bad, rec(1, id=bad)))
    assert not (tmp_path / "escape.json").exists()
    assert [p.name for p in (tmp_path / "docs").iterdir()] == ["things"]
    await ds.close()
