"""The stores' prefix probes the secret keeper uses: counting mismatches, rewriting a file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from microlib_kernel.errors import DatasourceLocked
from microlib_kernel.store.duckdb_prefixed import rewrite_prefixed_values
from microlib_kernel.store.filelock import WriterLock
from microlib_kernel.store.prefixed import count_prefix_mismatches
from microlib_kernel.store.sql import memory_sql_engine


def test_counts_values_missing_or_carrying_the_prefix() -> None:
    engine = memory_sql_engine()
    try:
        engine._con.execute(
            "CREATE TABLE t AS SELECT * FROM (VALUES "
            "('p:1', 'x', 'p:9'), ('plain', NULL, 'y'), (NULL, 'p:2', 'p:3')) v(a, b, c)"
        )
        counts = count_prefix_mismatches(engine, "t", "p:", {"a"}, {"b", "c"})
    finally:
        engine.close()
    # a: one non-NULL value without the prefix; b and c: values that carry it.
    assert counts == {"a": 1, "b": 1, "c": 2}


def test_a_quote_in_the_prefix_stays_inside_the_literal() -> None:
    engine = memory_sql_engine()
    try:
        engine._con.execute("CREATE TABLE t AS SELECT 'it''s' AS a")
        assert count_prefix_mismatches(engine, "t", "it'", set(), {"a"}) == {"a": 1}
    finally:
        engine.close()


def test_an_own_engine_closes_its_database() -> None:
    engine = memory_sql_engine()
    con = engine._con
    engine.close()
    with pytest.raises(duckdb.ConnectionException):
        con.execute("SELECT 1")


def _database(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (id VARCHAR, a VARCHAR, n INTEGER)")
    con.execute("INSERT INTO t VALUES ('1', 'p:old', 1), ('2', 'p:keep', 2), ('3', 'plain', 3)")
    con.execute("CREATE TABLE no_id (a VARCHAR)")
    con.execute("INSERT INTO no_id VALUES ('p:old')")
    con.close()


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_rewrites_prefixed_values_of_tables_with_an_id(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    _database(path)
    seen: list[tuple[str, str]] = []

    def rewrite(table: str, value: str) -> str | None:
        seen.append((table, value))
        return "p:new" if value == "p:old" else None

    rewrite_prefixed_values(path, "p:", rewrite, dry_run=False)
    assert sorted(seen) == [("t", "p:keep"), ("t", "p:old")]
    assert _rows(path, "SELECT id, a FROM t ORDER BY id") == [
        ("1", "p:new"),
        ("2", "p:keep"),
        ("3", "plain"),
    ]
    assert _rows(path, "SELECT a FROM no_id") == [("p:old",)]


def test_a_dry_run_or_a_failing_rewrite_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    _database(path)
    rewrite_prefixed_values(path, "p:", lambda table, value: "p:new", dry_run=True)

    def fail(table: str, value: str) -> str | None:
        raise ValueError("no key opens it")

    with pytest.raises(ValueError, match="no key"):
        rewrite_prefixed_values(path, "p:", fail, dry_run=False)
    assert _rows(path, "SELECT a FROM t ORDER BY id") == [("p:old",), ("p:keep",), ("plain",)]


def test_a_file_in_use_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    _database(path)
    lock = WriterLock(path)
    lock.acquire(path)
    try:
        with pytest.raises(DatasourceLocked, match="already open by another Host"):
            rewrite_prefixed_values(path, "p:", lambda table, value: None, dry_run=False)
    finally:
        lock.release()
