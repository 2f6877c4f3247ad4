"""Read-only SQL on a PostgreSQL datasource, in PostgreSQL's own dialect.

Fences, in the order they apply:

1. the statement must start like a query (``SELECT``, ``WITH``, ``VALUES``, ``TABLE``,
   ``EXPLAIN``), and server-side file, large-object, ``dblink`` and administration
   functions (``pg_read_file``, ``lo_import``, ``set_config``, ...) are refused by name;
2. it runs alone: always through the extended query protocol, which takes exactly one
   statement (``SELECT 1; DROP TABLE x`` is an error, not two statements);
3. it runs in a ``READ ONLY`` transaction that is rolled back afterwards, so even a
   data-modifying ``WITH`` is refused by the server;
4. ``statement_timeout`` (``SET LOCAL``, per query) stops a runaway query.

The role in the datasource URL is the role queries run as: give it no more than the
tables should show (see the README). Parameters are the host's: ``$name`` with a dict,
``?`` with a list; they are rewritten into psycopg placeholders outside string
literals, quoted names, comments and dollar-quoted strings.

Blocking: called from a worker thread (``SqlEngine``). It has its own small pool of
synchronous connections, so a query never waits for the host loop.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import BadQuery, DatasourceUnavailable, QueryTimeout
from ..sql_result import SqlResult
from .base import SqlEngine, TableSchema
from .postgres_pool import Freshness, checkout_sync

_QUERY_START = re.compile(r"^\s*\(*\s*(select|with|values|table|explain)\b", re.IGNORECASE)
_REFUSED = re.compile(
    r"\b(pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file|lo_\w+|dblink\w*|"
    r"pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_rotate_logfile|set_config|"
    r"pg_(try_)?advisory\w*|pg_notify|pg_switch_wal|pg_promote|pg_create_\w+|pg_drop_\w+|"
    r"pg_file_\w+|pg_logdir_ls|query_to_xml\w*|table_to_xml\w*|cursor_to_xml\w*|"
    r"pg_import_system_collations|pg_log_backend_memory_contexts)\s*\(",
    re.IGNORECASE,
)
# What placeholders must skip: 'strings', "names", -- comments, /* comments */ and
# dollar-quoted strings ($$...$$, $tag$...$tag$).
_SKIP = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|(\$[A-Za-z_]*\$).*?\1",
    re.DOTALL,
)
_NAMED = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


class PostgresSqlEngine(SqlEngine):
    """Runs read-only SQL on PostgreSQL.

    Args:
        conninfo: the libpq connection URL.
        timeout: ``statement_timeout`` in seconds.
        acquire_timeout: seconds to wait for a connection before answering
            ``DatasourceUnavailable``.
    """

    def __init__(self, conninfo: str, timeout: float, acquire_timeout: float = 5.0) -> None:
        self.conninfo = conninfo
        self.timeout = timeout
        self.acquire_timeout = acquire_timeout
        self._pool: Any = None
        self._fresh = Freshness()
        self._running: set[Any] = set()
        self._running_lock = threading.Lock()

    def _connections(self) -> Any:
        # Opened on first use: most hosts never run SQL.
        if self._pool is None:
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=4,
                open=False,
                timeout=self.acquire_timeout,
                kwargs={"connect_timeout": 5, "prepare_threshold": None},
                reconnect_timeout=3600.0,
                name="microlib-sql",
            )
            self._pool.open(wait=False)
        return self._pool

    def execute(self, query: str, params: Any = None) -> Any:
        return self._run(query, params, self.timeout, 0, 0)

    def execute_limited(self, query: str, params: Any, limits: Any) -> Any:
        """:meth:`execute` within the host's ``SqlLimits``: the stricter of its time limit
        and the URL's ``sql_timeout``, and its row and size caps (memory is the server's
        business: ``work_mem`` and friends, set on the role)."""
        timeouts = [t for t in (limits.timeout, self.timeout) if t and t > 0]
        return self._run(
            query, params, min(timeouts) if timeouts else 0.0, limits.max_rows, limits.max_bytes
        )

    def interrupt_all(self) -> None:
        """Cancel every query running now (the host is closing)."""
        with self._running_lock:
            running = list(self._running)
        for conn in running:
            try:
                conn.cancel_safe(timeout=2.0)
            except Exception:  # it ends with its connection anyway
                continue

    def _run(self, query: str, params: Any, timeout: float, max_rows: int, max_bytes: int) -> Any:
        import psycopg
        from psycopg_pool import PoolTimeout

        from .sql import _fetch

        sql, values = translate(check_query(query), params)
        start = time.perf_counter()
        try:
            pool = self._connections()
            conn = checkout_sync(pool, self._fresh, self.acquire_timeout)
            with self._running_lock:
                self._running.add(conn)
            try:
                conn.read_only = True
                try:
                    conn.execute(
                        "SELECT set_config('statement_timeout', %s, true)",
                        [f"{int(timeout * 1000)}ms"],
                    )
                    # binary=True: the extended protocol, one statement and no more.
                    cur = conn.execute(sql, values, binary=True)
                    columns = [d.name for d in cur.description or []]
                    rows = _fetch(cur, max_rows, max_bytes) if cur.description else []
                finally:
                    conn.rollback()
            finally:
                with self._running_lock:
                    self._running.discard(conn)
                self._fresh.mark(conn)
                pool.putconn(conn)
        except PoolTimeout:
            raise DatasourceUnavailable(
                "PostgreSQL is unavailable (no working connection); retry shortly"
            ) from None
        except psycopg.errors.QueryCanceled:
            raise QueryTimeout(
                f"the query ran longer than its limit of {timeout:g} s and was stopped "
                "(statement_timeout); narrow it (WHERE, LIMIT) or raise the limit (sql_timeout)",
                limit=timeout,
                elapsed=round(time.perf_counter() - start, 3),
            ) from None
        except psycopg.errors.ReadOnlySqlTransaction:
            raise BadQuery("only read-only queries are allowed (SELECT)") from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise BadQuery(f"SQL refused: {_first_line(exc)}") from None
        except psycopg.OperationalError as exc:
            raise DatasourceUnavailable(
                f"PostgreSQL is unavailable ({_first_line(exc)}); retry shortly"
            ) from None
        except psycopg.Error as exc:
            raise BadQuery(f"SQL error: {_first_line(exc)}") from None
        return SqlResult(columns, [tuple(r) for r in rows], time.perf_counter() - start)

    def mirror(self, schema: TableSchema, records: Sequence[dict[str, Any]]) -> None:
        """Not supported: SQL reads the tables of the PostgreSQL datasource only.

        Copying another datasource's records into a database other hosts share would
        make them race on one copy; such models are queried through their own store.
        """
        return None

    def drop_mirror(self, name: str) -> None:
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def check_query(query: str) -> str:
    """Refuse anything that is not one read-only query, before it reaches the server.

    Raises:
        BadQuery: not a query, or a server-side file/administration function.
    """
    if not isinstance(query, str) or not query.strip():
        raise BadQuery("SQL must be a non-empty string")
    bare = _SKIP.sub(lambda m: " " if m.group(0).startswith(("--", "/*")) else "''", query)
    if not _QUERY_START.match(bare):
        raise BadQuery("only read-only queries are allowed (SELECT, WITH, VALUES, EXPLAIN)")
    match = _REFUSED.search(bare)
    if match:
        raise BadQuery(
            f"{match.group(1)}() reaches files or administers the server; SQL here reads "
            "model tables only"
        )
    return query


def translate(query: str, params: Any) -> tuple[str, Any]:
    """The query with psycopg placeholders, and the values to bind.

    ``$name`` takes a dict, ``?`` a list (``?`` is then a placeholder, not the JSONB
    key-exists operator: use ``jsonb_exists(doc, key)``). A literal ``%`` is doubled.

    Raises:
        BadQuery: params of the wrong shape, or a ``$name`` missing from them.
    """
    if params is not None and not isinstance(params, dict | list | tuple):
        raise BadQuery(
            f"SQL params must be a dict ($name) or a list (?), got {type(params).__name__}"
        )
    named = isinstance(params, dict)
    positional = isinstance(params, list | tuple)
    out: list[str] = []
    used: list[str] = []
    pos = 0
    for m in _SKIP.finditer(query):
        out.append(_rewrite(query[pos : m.start()], named, positional, used))
        out.append(m.group(0).replace("%", "%%"))
        pos = m.end()
    out.append(_rewrite(query[pos:], named, positional, used))
    if named:
        assert isinstance(params, dict)
        missing = [n for n in used if n not in params]
        if missing:
            raise BadQuery(f"SQL parameter ${missing[0]} has no value in params")
        return "".join(out), {k: params[k] for k in used}
    return "".join(out), list(params or [])


def _rewrite(text: str, named: bool, positional: bool, used: list[str]) -> str:
    text = text.replace("%", "%%")
    if named:

        def name(m: re.Match[str]) -> str:
            used.append(m.group(1))
            return f"%({m.group(1)})s"

        text = _NAMED.sub(name, text)
    if positional:
        text = text.replace("?", "%s")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
