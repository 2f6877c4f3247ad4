"""The SQL fence against machine metadata, and the watchdog that enforces time limits."""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from microlib_kernel.errors import BadQuery
from microlib_kernel.store.sql_guard import Watchdog, check_no_metadata, is_machine_name


def _serializer() -> object:
    con = duckdb.connect()
    return lambda text: con.execute("SELECT json_serialize_sql(?)", [text]).fetchone()[0]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM pragma_database_list",
        "SELECT path FROM pragma_database_list()",
        "SELECT * FROM duckdb_settings()",
        'SELECT * FROM "DuckDB_Settings"()',
        "SELECT * FROM system.main.duckdb_databases()",
        "SELECT current_setting('temp_directory')",
        "SELECT x FROM (SELECT getenv('HOME') AS x)",
        "WITH s AS (SELECT * FROM duckdb_temporary_files()) SELECT * FROM s",
        "EXPLAIN SELECT current_setting('memory_limit')",
        "EXPLAIN ANALYZE SELECT * FROM duckdb_extensions()",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM duckdb_secrets())",
    ],
)
def test_machine_metadata_is_refused(query: str) -> None:
    with pytest.raises(BadQuery, match="machine or settings"):
        check_no_metadata(query, _serializer())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1",
        "SELECT table_name FROM duckdb_tables()",
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'orders'",
        "SELECT * FROM range(3)",
        "SHOW TABLES",
        "SELECT 'current_setting' AS word",
    ],
)
def test_model_queries_pass(query: str) -> None:
    check_no_metadata(query, _serializer())  # type: ignore[arg-type]


def test_text_fallback_when_the_parser_cannot_serialize() -> None:
    def broken(text: str) -> str:
        raise RuntimeError("no serializer")

    with pytest.raises(BadQuery):
        check_no_metadata("SELECT * FROM duckdb_settings()", broken)
    check_no_metadata("SELECT 1", broken)


def test_machine_names() -> None:
    assert is_machine_name("duckdb_settings") and is_machine_name("PRAGMA_version")
    assert not is_machine_name("duckdb_columns") and not is_machine_name("orders")


def test_watchdog_fires_after_the_deadline_and_never_after_exit() -> None:
    dog = Watchdog()
    fired = threading.Event()
    start = time.monotonic()
    with dog.deadline(0.1, fired.set):
        assert fired.wait(2)
    assert 0.09 <= time.monotonic() - start < 2
    late = threading.Event()
    with dog.deadline(0.2, late.set):
        pass
    time.sleep(0.4)
    assert not late.is_set()
    with dog.deadline(0, late.set):  # no limit
        pass
    assert not late.is_set()
