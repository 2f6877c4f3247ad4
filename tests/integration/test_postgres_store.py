"""The PostgreSQL store beyond the shared contract: revisions checked by the database
(also between two stores, as two hosts would be), group commit, bad values failing
alone, schema changes, and its read-only SQL engine. Real PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from microlib_kernel import BadQuery, Conflict, DatasourceError, DeployRefused, ValidationFailed
from microlib_kernel.config import Settings
from microlib_kernel.domain.types import ValueType
from microlib_kernel.store import Column, TableSchema, WriteOp, create_datasource
from microlib_kernel.store.postgres import PostgresStore
from microlib_kernel.store.postgres_sql import translate
from tests.pg_support import temporary_database

pytestmark = pytest.mark.anyio

STR, INT, FLOAT = ValueType("string"), ValueType("integer"), ValueType("float")
SCHEMA = TableSchema(
    "things",
    (
        Column("id", STR),
        Column("revision", INT, 0, True),
        Column("name", STR),
        Column("size", FLOAT, 0.0, True),
        Column("tags", ValueType("list", item=STR), [], True),
    ),
)


def rec(id: str, revision: int = 1, **extra: object) -> dict:
    return {"id": id, "revision": revision, "name": "n", "size": 1.0, "tags": ["a"]} | extra


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


async def open_store(url: str, tmp_path: Path) -> PostgresStore:
    ds = create_datasource(url, Settings.load(cwd=tmp_path, env={}))
    assert isinstance(ds, PostgresStore)
    await ds.open()
    await ds.ensure_table(SCHEMA)
    return ds


@pytest.fixture
async def store(pg_url: str, tmp_path: Path) -> AsyncIterator[PostgresStore]:
    ds = await open_store(pg_url, tmp_path)
    yield ds
    await ds.close()


async def test_postgres_scheme_alias_and_password_never_shown(tmp_path: Path) -> None:
    settings = Settings.load(cwd=tmp_path, env={})
    ds = create_datasource("postgres://me:hunter2@db.example:5433/app?sql_timeout=2", settings)
    assert isinstance(ds, PostgresStore)
    assert ds.sql_timeout == 2.0
    assert "hunter2" not in ds.describe() and "db.example:5433/app" in ds.describe()
    assert "sql_timeout" not in ds.conninfo and ds.conninfo.startswith("postgresql://")


def test_without_psycopg_the_url_is_refused_with_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg_pool", None)  # import fails
    with pytest.raises(DatasourceError, match=r"microlib-kernel\[postgres\]"):
        create_datasource("postgresql://x@127.0.0.1/db", Settings.load(cwd=tmp_path, env={}))


async def test_stale_update_and_delete_are_conflicts(store: PostgresStore) -> None:
    await store.write(WriteOp("upsert", "things", "a", rec("a"), expect_revision=0))
    await store.write(WriteOp("upsert", "things", "a", rec("a", 2), expect_revision=1))
    with pytest.raises(Conflict):
        await store.write(
            WriteOp("upsert", "things", "a", rec("a", 2, name="x"), expect_revision=1)
        )
    with pytest.raises(Conflict):
        await store.write(WriteOp("delete", "things", "a", expect_revision=1))
    with pytest.raises(Conflict):  # an update of a row that does not exist
        await store.write(WriteOp("upsert", "things", "b", rec("b", 2), expect_revision=1))
    got = await store.get("things", "a")
    assert got is not None and got["revision"] == 2 and got["name"] == "n"
    await store.write(WriteOp("delete", "things", "a", expect_revision=2))
    assert await store.get("things", "a") is None


async def test_two_stores_on_one_database_cannot_overwrite_each_other(
    store: PostgresStore, pg_url: str, tmp_path: Path
) -> None:
    other = await open_store(pg_url, tmp_path)
    try:
        await store.write(WriteOp("upsert", "things", "a", rec("a"), expect_revision=0))
        # Both read revision 1; both try to write revision 2: exactly one wins.
        outcomes = await asyncio.gather(
            store.write(
                WriteOp("upsert", "things", "a", rec("a", 2, name="mine"), expect_revision=1)
            ),
            other.write(
                WriteOp("upsert", "things", "a", rec("a", 2, name="theirs"), expect_revision=1)
            ),
            return_exceptions=True,
        )
        assert sum(isinstance(o, Conflict) for o in outcomes) == 1
        assert sum(o is None for o in outcomes) == 1
        got = await other.get("things", "a")
        assert got is not None and got["revision"] == 2
        assert got["name"] == ("mine" if outcomes[0] is None else "theirs")
    finally:
        await other.close()


async def test_concurrent_writes_share_commits_and_fail_alone(store: PostgresStore) -> None:
    await store.write(WriteOp("upsert", "things", "taken", rec("taken"), expect_revision=0))
    before = store.commits
    ops = [
        WriteOp("upsert", "things", f"t{i}", rec(f"t{i}"), expect_revision=0) for i in range(200)
    ]
    ops.append(WriteOp("upsert", "things", "taken", rec("taken"), expect_revision=0))
    ops.append(WriteOp("upsert", "things", "nul", rec("nul", name="a\x00b"), expect_revision=0))
    outcomes = await asyncio.gather(*[store.write(op) for op in ops], return_exceptions=True)
    assert all(o is None for o in outcomes[:200])
    assert isinstance(outcomes[200], Conflict)
    assert isinstance(outcomes[201], ValidationFailed) and "NUL" in str(outcomes[201])
    assert await store.count("things", {}) == 201
    assert store.commits - before < 20  # grouped, not one transaction per write


async def test_a_conflict_in_a_group_fails_alone_and_the_rest_is_acknowledged(
    store: PostgresStore,
) -> None:
    await store.write(WriteOp("upsert", "things", "t7", rec("t7", name="first")))
    ops = [WriteOp("upsert", "things", f"t{i}", rec(f"t{i}"), expect_revision=0) for i in range(50)]
    many = [WriteOp("upsert", "things", f"m{i}", rec(f"m{i}"), expect_revision=0) for i in range(3)]
    # Lone writes only (one INSERT without a transaction), then mixed with an
    # all-or-nothing item (a transaction).
    outcomes = await asyncio.gather(*[store.write(op) for op in ops[:25]], return_exceptions=True)
    assert [i for i, o in enumerate(outcomes) if o is not None] == [7]
    assert isinstance(outcomes[7], Conflict)
    outcomes = await asyncio.gather(
        *[store.write(op) for op in ops[25:]], store.write_many(many), return_exceptions=True
    )
    assert outcomes == [None] * 26
    assert await store.count("things", {}) == 53
    got = await store.get("things", "t7")
    assert got is not None and got["name"] == "first"


async def test_write_many_is_all_or_nothing_and_write_each_is_not(store: PostgresStore) -> None:
    await store.write(WriteOp("upsert", "things", "taken", rec("taken"), expect_revision=0))
    ops = [WriteOp("upsert", "things", f"m{i}", rec(f"m{i}"), expect_revision=0) for i in range(5)]
    clash = WriteOp("upsert", "things", "taken", rec("taken"), expect_revision=0)
    with pytest.raises(Conflict):
        await store.write_many([*ops, clash])
    assert await store.count("things", {}) == 1
    errors = await store.write_each([*ops, clash])
    assert errors[:5] == [None] * 5 and isinstance(errors[5], Conflict)
    assert await store.count("things", {}) == 6


async def test_filters_cast_json_values_to_column_types(store: PostgresStore) -> None:
    await store.write_many(
        [WriteOp("upsert", "things", f"t{i}", rec(f"t{i}", size=float(i))) for i in range(4)]
    )
    assert await store.count("things", {"size": 2}) == 1
    assert await store.count("things", {"name": None}) == 0


async def test_two_stores_growing_one_table_at_once_take_turns(
    store: PostgresStore, pg_url: str, tmp_path: Path
) -> None:
    other = await open_store(pg_url, tmp_path)
    try:
        await store.write(WriteOp("upsert", "things", "a", rec("a")))
        grown = TableSchema("things", (*SCHEMA.columns, Column("colour", STR, "blue", True)))
        changes = await asyncio.gather(store.ensure_table(grown), other.ensure_table(grown))
        assert sorted(c.added for c in changes) == [(), ("colour",)]
        for ds in (store, other):
            got = await ds.get("things", "a")
            assert got is not None and got["colour"] == "blue"
    finally:
        await other.close()


async def test_type_change_that_rows_do_not_fit_is_refused(store: PostgresStore) -> None:
    await store.write(WriteOp("upsert", "things", "a", rec("a", name="not a number")))
    narrowed = TableSchema(
        "things", tuple(Column("name", INT) if c.name == "name" else c for c in SCHEMA.columns)
    )
    with pytest.raises(DeployRefused, match=r"cannot change things\.name"):
        await store.ensure_table(narrowed)
    got = await store.get("things", "a")
    assert got is not None and got["name"] == "not a number"


async def test_sql_reads_in_postgres_dialect_and_refuses_writes(store: PostgresStore) -> None:
    await store.write_many(
        [WriteOp("upsert", "things", f"t{i}", rec(f"t{i}", size=float(i))) for i in range(5)]
    )
    engine = store.sql_engine()
    assert engine is not None
    run = engine.execute
    got = await asyncio.to_thread(
        run, "SELECT count(*) AS n, sum(size) FROM things WHERE size >= $min", {"min": 2}
    )
    assert got.columns == ["n", "sum"] and got.rows == [(3, 9.0)]
    got = await asyncio.to_thread(run, "SELECT tags->>0 AS tag FROM things WHERE id = ?", ["t1"])
    assert got.rows == [("a",)]
    got = await asyncio.to_thread(run, "SELECT '100%' AS pct, '?' AS q, '$x' AS d")
    assert got.rows == [("100%", "?", "$x")]
    refused = [
        "DELETE FROM things",
        "SELECT 1; DELETE FROM things",
        "WITH gone AS (DELETE FROM things RETURNING id) SELECT * FROM gone",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT * FROM nowhere",
        "SELECT $missing",
    ]
    for sql in refused:
        with pytest.raises(BadQuery):
            await asyncio.to_thread(run, sql, {} if "$" in sql else None)
    assert await store.count("things", {}) == 5


async def test_sql_statement_timeout(pg_url: str, tmp_path: Path) -> None:
    ds = await open_store(pg_url + "?sql_timeout=0.2", tmp_path)
    try:
        engine = ds.sql_engine()
        assert engine is not None
        with pytest.raises(BadQuery, match="statement_timeout"):
            await asyncio.to_thread(engine.execute, "SELECT pg_sleep(5)")
        ok = await asyncio.to_thread(engine.execute, "SELECT 1 AS one")
        assert ok.rows == [(1,)]
    finally:
        await ds.close()


def test_placeholders_skip_literals_comments_and_dollar_quotes() -> None:
    sql, values = translate(
        "SELECT $a, '$a ?', \"$a\", $$ $a $$ -- $a\nFROM t WHERE x LIKE 'a%' AND y = $b",
        {"a": 1, "b": 2, "c": 3},
    )
    assert sql == (
        "SELECT %(a)s, '$a ?', \"$a\", $$ $a $$ -- $a\nFROM t WHERE x LIKE 'a%%' AND y = %(b)s"
    )
    assert values == {"a": 1, "b": 2}
    sql, values = translate("SELECT ? + ?", [1, 2])
    assert sql == "SELECT %s + %s" and values == [1, 2]
