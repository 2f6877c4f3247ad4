"""Read-only SQL over model tables: the statement check and the DuckDB engine.

Three fences keep SQL read-only: the statement must be a single query (``SELECT``,
``WITH ... SELECT``, ``EXPLAIN``); the database is opened with
``enable_external_access=false`` (no file or network table functions, no ATTACH of
files, no extension loading; DuckDB refuses to turn it back on while the database is
open); and names of file/network table functions are refused up front with a clear
message.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import BadQuery, QueryTimeout
from ..sql_result import SqlResult
from .base import SqlEngine, TableSchema
from .duckdb_types import decoder, encoder, param_expr, quote, sql_type
from .sql_guard import SqlLimits, Watchdog, check_no_metadata

MIRROR_SCHEMA = "microlib_mirror"

_FILE_FUNCTIONS = re.compile(
    r"\b(read_csv|read_csv_auto|read_parquet|parquet_scan|read_json|read_json_auto|"
    r"read_json_objects|read_ndjson|read_ndjson_auto|read_ndjson_objects|read_text|read_blob|"
    r"glob|sniff_csv|parquet_metadata|parquet_schema|read_xlsx|iceberg_scan|delta_scan|"
    r"sqlite_scan|postgres_scan|mysql_scan|query_table)\s*\(",
    re.IGNORECASE,
)


def check_read_only(query: str) -> None:
    """Refuse anything but a single query statement.

    Raises:
        BadQuery: several statements, a write, DDL, ATTACH, COPY, PRAGMA, SET, INSTALL,
            LOAD, or a file/network table function.
    """
    import duckdb

    if not isinstance(query, str) or not query.strip():
        raise BadQuery("SQL must be a non-empty string")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise BadQuery(f"SQL does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise BadQuery(f"send exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN):
        name = str(kind).rsplit(".", 1)[-1]
        raise BadQuery(f"only read-only queries are allowed (SELECT); this is {name}")
    match = _FILE_FUNCTIONS.search(query)
    if match:
        raise BadQuery(
            f"{match.group(1)}() reads files or the network; SQL here reads model tables only"
        )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _serialize(cur: Any, query: str) -> str:
    """DuckDB's parse tree of ``query`` as JSON text (for the metadata fence)."""
    row = cur.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    return str(row[0]) if row else "{}"


#: Most query texts remembered as having passed the metadata fence.
_FENCED_SIZE = 1024
#: Rows fetched per round trip when an answer is capped.
_CHUNK = 2048


def _fetch(rel: Any, max_rows: int, max_bytes: int = 0) -> list[tuple[Any, ...]]:
    """All rows of ``rel``; :class:`BadQuery` once there are more than ``max_rows``, or
    once the text and binary values add up to more than ``max_bytes``."""
    if max_rows <= 0 and max_bytes <= 0:
        return [tuple(r) for r in rel.fetchall()]
    rows: list[tuple[Any, ...]] = []
    size = 0
    while True:
        want = _CHUNK if max_rows <= 0 else min(_CHUNK, max_rows + 1 - len(rows))
        chunk = rel.fetchmany(want)
        if not chunk:
            return rows
        rows.extend(tuple(r) for r in chunk)
        if max_rows > 0 and len(rows) > max_rows:
            raise BadQuery(
                f"the answer has more than {max_rows} rows (sql_max_rows); add a LIMIT, "
                "aggregate, or page with LIMIT/OFFSET",
                max_rows=max_rows,
            )
        if max_bytes > 0:
            size += sum(_approx_size(v) for row in chunk for v in row)
            if size > max_bytes:
                raise BadQuery(
                    f"the answer is larger than {max_bytes} bytes (sql_max_bytes); select "
                    "fewer or shorter columns, or fewer rows",
                    max_bytes=max_bytes,
                )


def _approx_size(value: Any) -> int:
    """About how many bytes a value takes in a JSON answer (strings and blobs dominate)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple | dict):
        return len(str(value))
    return 8


def _check_params(params: Any) -> Any:
    if params is None:
        return None
    if isinstance(params, dict):
        if not all(isinstance(k, str) for k in params):
            raise BadQuery("named SQL parameters need string keys ($name)")
        return params
    if isinstance(params, list | tuple):
        return list(params)
    raise BadQuery(f"SQL params must be a dict ($name) or a list (?), got {type(params).__name__}")


class DuckDBSqlEngine(SqlEngine):
    """Runs read-only SQL on a DuckDB database, with mirrors of non-DuckDB tables.

    Each thread gets its own cursor (DuckDB connections are not shared across threads).
    Mirrored tables live in an attached in-memory catalog, ``microlib_mirror``, that is
    on every cursor's search path.

    Args:
        connection: a ``duckdb.DuckDBPyConnection`` opened with external access off.
        owns_connection: close the connection with the engine (an engine of its own
            database, :func:`memory_sql_engine`); a store's engine leaves its store's
            connection open.
    """

    def __init__(self, connection: Any, *, owns_connection: bool = False) -> None:
        self._con = connection
        self._owns_connection = owns_connection
        self._local = threading.local()
        self._cursors: list[Any] = []
        self._lock = threading.Lock()
        self._mirrors: set[str] = set()
        self._watchdog = Watchdog()
        self._applied: tuple[str, str] = ("", "")
        self._closing = False
        self._fenced: set[str] = set()  # query texts the metadata fence let through
        self._con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {MIRROR_SCHEMA}")

    def _cursor(self) -> Any:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            cur.execute(f"SET search_path = 'main,{MIRROR_SCHEMA}'")
            self._local.cursor = cur
            with self._lock:
                self._cursors.append(cur)
        return cur

    def execute(self, query: str, params: Any = None) -> SqlResult:
        return self.execute_limited(query, params, SqlLimits(timeout=0))

    def execute_limited(self, query: str, params: Any, limits: SqlLimits) -> SqlResult:
        """Run one read-only query within ``limits``.

        Raises:
            BadQuery: not a read-only query, machine metadata, a SQL error, or more rows
                than ``limits.max_rows``.
            QueryTimeout: the query ran past ``limits.timeout`` and was interrupted.
        """
        import duckdb

        check_read_only(query)
        params = _check_params(params)
        if self._closing:
            raise BadQuery("the host is closing: no new SQL queries")
        cur = self._cursor()
        if query not in self._fenced:
            # The fence costs ~0.5 ms (DuckDB serializes the parse tree); a query text
            # that passed once passes again, so repeated queries skip it.
            check_no_metadata(query, lambda text: _serialize(cur, text))
            with self._lock:
                if len(self._fenced) >= _FENCED_SIZE:
                    self._fenced.clear()
                self._fenced.add(query)
        self._apply(limits)
        start = time.perf_counter()
        try:
            with self._watchdog.deadline(limits.timeout, cur.interrupt):
                rel = cur.execute(query, params) if params is not None else cur.execute(query)
                columns = [d[0] for d in (rel.description or [])]
                rows = _fetch(rel, limits.max_rows, limits.max_bytes)
        except duckdb.InterruptException:
            elapsed = time.perf_counter() - start
            if self._closing:
                raise BadQuery("the query was stopped: the host is closing") from None
            raise QueryTimeout(
                f"the query ran longer than its limit of {limits.timeout:g} s and was stopped; "
                "narrow it (WHERE, LIMIT) or raise the limit (sql_timeout)",
                limit=limits.timeout,
                elapsed=round(elapsed, 3),
            ) from None
        except duckdb.PermissionException:
            raise BadQuery(
                "SQL here reads model tables only (no files, network or ATTACH)"
            ) from None
        except duckdb.OutOfMemoryException:
            raise BadQuery(
                "the query needs more memory than the limit (sql_memory_limit); narrow it"
            ) from None
        except duckdb.Error as exc:
            raise BadQuery(f"SQL error: {_first_line(exc)}") from None
        return SqlResult(columns, rows, time.perf_counter() - start)

    def _apply(self, limits: SqlLimits) -> None:
        """Set the database's memory and spill limits once (they are global settings)."""
        wanted = (limits.memory_limit, limits.temp_limit)
        if wanted == self._applied or wanted == ("", ""):
            return
        with self._lock:
            cur = self._con.cursor()
            try:
                if limits.memory_limit:
                    cur.execute("SET memory_limit = ?", [limits.memory_limit])
                if limits.temp_limit:
                    cur.execute("SET max_temp_directory_size = ?", [limits.temp_limit])
            except Exception as exc:
                raise BadQuery(f"bad SQL memory setting: {_first_line(exc)}") from None
            finally:
                cur.close()
            self._applied = wanted

    def interrupt_all(self) -> None:
        """Interrupt every cursor's running query (the host is closing)."""
        self._closing = True
        with self._lock:
            cursors = list(self._cursors)
        for cur in cursors:
            try:
                cur.interrupt()
            except Exception:
                pass

    def mirror(self, schema: TableSchema, records: Sequence[dict[str, Any]]) -> None:
        cols = schema.columns
        with self._lock:
            name = f"{MIRROR_SCHEMA}.{quote(schema.name)}"
            ddl = ", ".join(f"{quote(c.name)} {sql_type(c.type)}" for c in cols)
            cur = self._con.cursor()
            try:
                cur.execute("BEGIN")
                cur.execute(f"CREATE OR REPLACE TABLE {name} ({ddl})")
                if records:
                    exprs = ", ".join(param_expr(i + 1, c.type) for i, c in enumerate(cols))
                    values = []
                    for c in cols:
                        enc = encoder(c.type)
                        values.append([enc(r.get(c.name, c.default)) for r in records])
                    cur.execute(
                        f"INSERT INTO {name} ({', '.join(quote(c.name) for c in cols)}) "
                        f"SELECT {exprs}",
                        values,
                    )
                cur.execute("COMMIT")
            finally:
                cur.close()
            self._mirrors.add(schema.name)

    def drop_mirror(self, name: str) -> None:
        with self._lock:
            if name in self._mirrors:
                self._con.execute(f"DROP TABLE IF EXISTS {MIRROR_SCHEMA}.{quote(name)}")
                self._mirrors.discard(name)

    def close(self) -> None:
        self.interrupt_all()
        with self._lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except Exception:
                    pass
            self._cursors.clear()
        if self._owns_connection:
            self._con.close()


def memory_sql_engine() -> DuckDBSqlEngine:
    """A read-only SQL engine on an in-memory DuckDB database of its own.

    For hosts whose default datasource has no SQL of its own (``memory://``,
    ``file://``): every table is mirrored into it. Closing the engine closes the
    database.
    """
    import duckdb

    con = duckdb.connect(":memory:", config={"enable_external_access": False})
    return DuckDBSqlEngine(con, owns_connection=True)


def decode_rows(
    columns: Sequence[str], types: dict[str, Any], rows: Sequence[tuple[Any, ...]]
) -> list[dict[str, Any]]:
    """Rows from DuckDB as records, JSON columns parsed."""
    decs = [(i, d) for i, c in enumerate(columns) if (t := types.get(c)) and (d := decoder(t))]
    out = []
    for row in rows:
        rec = dict(zip(columns, row, strict=True))
        for i, d in decs:
            rec[columns[i]] = d(row[i])
        out.append(rec)
    return out
