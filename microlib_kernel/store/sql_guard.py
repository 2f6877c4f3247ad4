"""Limits on SQL: what a query may name, how long it may run, how much it may answer.

Three things keep one query from hurting the host or telling an outsider about it:

* **metadata fence**: functions and tables that describe the machine rather than the
  models (``duckdb_settings()``, ``current_setting()``, ``pragma_database_list`` with
  its file paths, ``duckdb_databases()``, ``getenv()``, ...) are refused. The check
  walks DuckDB's own parse tree (``json_serialize_sql``), so quoting or schema-
  qualifying a name does not get around it; the catalog views a user needs to find
  tables and columns (``duckdb_tables()``, ``duckdb_columns()``, ...) stay readable;
* **time limit**: a :class:`Watchdog` interrupts the query's connection when its
  deadline passes (``connection.interrupt()`` stops DuckDB between vectors), so a
  runaway ``ORDER BY`` or an unbounded recursive CTE ends with
  :class:`~microlib_kernel.errors.QueryTimeout` instead of pinning a core forever;
* **row cap**: results are fetched in chunks and refused past ``max_rows`` (the rest
  is never produced, as DuckDB streams results).

The memory limit is a database setting (``SET memory_limit``), applied by the engine.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import BadQuery

#: Catalog functions that describe the models' tables; everything else named
#: ``duckdb_*`` or ``pragma_*`` describes the machine, the files or the settings.
CATALOG_FUNCTIONS = frozenset(
    {
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_views",
        "duckdb_schemas",
        "duckdb_types",
        "duckdb_constraints",
        "duckdb_indexes",
        "duckdb_keywords",
        "duckdb_functions",
    }
)
#: Functions outside those prefixes that read settings or the environment.
MACHINE_FUNCTIONS = frozenset(
    {"current_setting", "getenv", "which_secret", "test_all_types", "enable_logging"}
)
_MACHINE_PREFIXES = ("duckdb_", "pragma_")
_NAME = re.compile(r"\b((?:duckdb|pragma)_\w+|current_setting|getenv|which_secret)\b", re.I)
_EXPLAIN = re.compile(r"^\s*explain(\s+analy[sz]e)?\b", re.IGNORECASE)


def is_machine_name(name: str) -> bool:
    """Whether a function or table ``name`` reads about the machine, not the models."""
    low = name.lower()
    if low in CATALOG_FUNCTIONS:
        return False
    return low in MACHINE_FUNCTIONS or low.startswith(_MACHINE_PREFIXES)


def referenced_names(tree: Any) -> Iterator[str]:
    """Every function name and table name in a ``json_serialize_sql`` tree."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name = node.get("function_name")
            if isinstance(name, str):
                yield name
            if node.get("type") == "BASE_TABLE" and isinstance(node.get("table_name"), str):
                yield node["table_name"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def check_no_metadata(query: str, serialize: Callable[[str], str]) -> None:
    """Refuse a query that reads settings, file paths or other machine metadata.

    Args:
        query: one read-only statement (already checked by ``check_read_only``).
        serialize: runs DuckDB's ``json_serialize_sql`` on a query text.

    Raises:
        BadQuery: the query names such a function or table.
    """
    inner = _EXPLAIN.sub("", query, count=1)
    names: list[str]
    try:
        tree = json.loads(serialize(inner))
    except Exception:
        tree = None
    if isinstance(tree, dict) and not tree.get("error"):
        names = list(referenced_names(tree))
    else:
        # The parser's serializer does not cover this statement: fall back to the
        # text, which errs on the side of refusing.
        names = [m.group(1) for m in _NAME.finditer(query)]
    for name in names:
        if is_machine_name(name):
            raise BadQuery(
                f"{name} describes the host's machine or settings; SQL here reads model "
                "tables (and duckdb_tables()/duckdb_columns() to find them)"
            )


@dataclass(frozen=True)
class SqlLimits:
    """How much one SQL query may take.

    Attributes:
        timeout: seconds before the query is interrupted (``0``: no limit).
        max_rows: most rows an answer may have (``0``: no limit).
        max_bytes: most bytes of values an answer may have, about (``0``: no limit).
        memory_limit: DuckDB ``memory_limit`` for the database (``""``: DuckDB's default).
        temp_limit: DuckDB ``max_temp_directory_size`` (spill to disk; ``""``: default).
    """

    timeout: float = 30.0
    max_rows: int = 0
    max_bytes: int = 0
    memory_limit: str = ""
    temp_limit: str = ""


class Watchdog:
    """One thread that calls a callback when a deadline passes (query interrupts).

    A deadline is cancelled when its ``with`` block ends. Firing and cancelling take the
    same lock, so once :meth:`deadline` has exited its callback is never called.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    @contextmanager
    def deadline(self, seconds: float, on_expiry: Callable[[], None]) -> Iterator[None]:
        """Run the block; call ``on_expiry`` (from the watchdog thread) after ``seconds``."""
        if seconds <= 0:
            yield
            return
        key = next(self._ids)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, key, on_expiry))
            self._live.add(key)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="microlib-sql-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][1] == key:
                # Wake the thread only when this deadline comes first: a wake-up per
                # query costs a context switch (~0.1 ms here).
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._live.discard(key)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # cancelled
                if not self._heap:
                    # Idle: wait for work, and end the thread after a quiet minute.
                    if not self._cond.wait(60) and not self._heap:
                        self._thread = None
                        return
                    continue
                due, key, callback = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(key)
                try:
                    callback()
                except Exception:  # pragma: no cover - interrupting a closed cursor
                    pass
