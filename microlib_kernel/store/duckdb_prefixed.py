"""Rewriting prefixed text values of a DuckDB file in place, offline.

``microlib secrets rotate`` re-encrypts sealed values (which all start with one
prefix) without a host: no model needs to be published, so every ``VARCHAR`` column
of every table with an ``id`` is scanned. What a value becomes is the caller's
business (``rewrite``); this module knows DuckDB, the writer lock and the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .filelock import WriterLock
from .sql_text import quote

#: ``rewrite(table, value)``: the new value, or ``None`` to leave it as it is.
Rewrite = Callable[[str, str], str | None]


def rewrite_prefixed_values(path: Path, prefix: str, rewrite: Rewrite, *, dry_run: bool) -> None:
    """Pass every stored text value starting with ``prefix`` to ``rewrite``, store the answers.

    The database is locked like a host locks it, and all changes commit in one
    transaction (rolled back instead on a dry run, or when ``rewrite`` raises).

    Args:
        path: the DuckDB file (it must exist).
        prefix: the text prefix of the values to visit.
        rewrite: called with the table name and each value.
        dry_run: visit every value but change nothing.

    Raises:
        DatasourceLocked: a host or another process has the file open.
    """
    import duckdb

    lock = WriterLock(path)
    lock.acquire(path)
    try:
        con = duckdb.connect(str(path), config={"enable_external_access": False})
        try:
            _rewrite(con, prefix, rewrite, dry_run)
        finally:
            con.close()
    finally:
        lock.release()


def _rewrite(con: Any, prefix: str, rewrite: Rewrite, dry: bool) -> None:
    columns = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = 'main' AND data_type = 'VARCHAR' "
        "AND column_name <> 'id' ORDER BY table_name, column_index"
    ).fetchall()
    has_id = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND column_name = 'id'"
        ).fetchall()
    }
    con.execute("BEGIN")
    try:
        for table, column in columns:
            if table not in has_id:
                continue
            t, c = quote(table), quote(column)
            rows = con.execute(
                f"SELECT id, {c} FROM {t} WHERE starts_with({c}, ?)", [prefix]
            ).fetchall()
            ids, values = [], []
            for rid, value in rows:
                new = rewrite(table, value)
                if new is not None:
                    ids.append(rid)
                    values.append(new)
            if ids and not dry:
                con.execute(
                    f"UPDATE {t} SET {c} = v.new FROM (SELECT unnest($1::VARCHAR[]) AS id, "
                    f"unnest($2::VARCHAR[]) AS new) AS v WHERE {t}.id = v.id",
                    [ids, values],
                )
        con.execute("ROLLBACK" if dry else "COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if not dry:
        con.execute("CHECKPOINT")
