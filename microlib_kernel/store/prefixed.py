"""Counting text values by a prefix, in SQL any engine here runs (DuckDB, PostgreSQL).

The secret keeper asks this before it publishes a version whose fields changed their
secrecy: sealed values all start with one prefix, so "plaintext under a secret field"
and "ciphertext under a plain field" are two prefix counts per column, answered in one
scan instead of reading every record into Python.
"""

from __future__ import annotations

from collections.abc import Collection

from .base import SqlEngine
from .sql_text import quote


def count_prefix_mismatches(
    engine: SqlEngine,
    table: str,
    prefix: str,
    prefixed: Collection[str],
    unprefixed: Collection[str],
) -> dict[str, int]:
    """Per column of ``table``, the values that disagree with the prefix they should have.

    Blocking: call it from a worker thread.

    Args:
        engine: the SQL engine of the datasource that holds ``table``.
        table: the table name.
        prefix: the text prefix.
        prefixed: columns whose values should all start with ``prefix``; non-NULL
            values that do not are counted.
        unprefixed: columns whose values should never start with it; values that do
            are counted.

    Returns:
        A count for every column named, zero included.
    """
    names = sorted(prefixed) + sorted(unprefixed)
    literal = "'" + prefix.replace("'", "''") + "'"
    starts = f"starts_with(CAST({{}} AS VARCHAR), {literal})"
    parts = [
        f"count(*) FILTER (WHERE {quote(n)} IS NOT NULL AND NOT {starts.format(quote(n))})"
        for n in sorted(prefixed)
    ] + [f"count(*) FILTER (WHERE {starts.format(quote(n))})" for n in sorted(unprefixed)]
    result = engine.execute(f"SELECT {', '.join(parts)} FROM {quote(table)}")
    return dict(zip(names, result.rows[0], strict=True))
