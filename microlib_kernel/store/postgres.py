"""``postgresql://user@host:port/db``: a database several hosts can share.

The same shape as the DuckDB store: one table per model (named by its endpoint), one
typed column per top-level field, nested values as ``JSONB``. psycopg 3, async, with
a connection pool (``psycopg_pool.AsyncConnectionPool``).

* Writes go through one writer task that **commits in groups** (see
  ``postgres_commit.py``), and revisions are checked by the database, so a write based
  on a stale revision is a ``Conflict`` even when another process made the change.
* Schema changes take a transaction-scoped advisory lock per table, so hosts
  publishing the same model at once do not race on ``ALTER TABLE``.
* A server that cannot be reached (down, restarting, no free connection within
  ``acquire_timeout``) is :class:`~microlib_kernel.errors.DatasourceUnavailable`
  (HTTP 503 with ``Retry-After``). A connection idle for a second or more is probed
  before use and replaced if broken (``postgres_pool.py``), so requests recover by
  themselves when the server is back. A write is acknowledged only after its
  ``COMMIT`` returned.
* SQL (``host.sql``, ``POST /sql``) is PostgreSQL's own, see ``postgres_sql.py``.

The store runs on the event loop that opened it (the host loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ..domain.types import ValueType
from ..errors import BadQuery, DatasourceError, DatasourceUnavailable, DeployRefused
from .base import Column, DataSource, Query, SchemaChange, TableSchema, WriteOp
from .postgres_commit import GroupCommitter, PendingWrites, settle
from .postgres_leases import PostgresLeases
from .postgres_pool import Freshness, checkout
from .postgres_sql import PostgresSqlEngine
from .postgres_types import catalog_name, encoder, guess, quote, sql_type
from .postgres_url import split_url
from .registry import redact_url
from .sql_text import order_and_page

if TYPE_CHECKING:
    from ..config import Settings


_STOP = object()
_COLUMNS_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = %s"
)


class PostgresStore(DataSource):
    """PostgreSQL with an async connection pool and group commit.

    Args:
        url: the datasource URL (``postgresql://`` or ``postgres://``).
        conninfo: what libpq connects with (the URL without microlib's own parameters).
        commit_batch: the most writes one transaction takes.
        pool_size: the most connections the store opens (reads, writer, DDL).
        acquire_timeout: seconds a request waits for a connection before it is
            answered ``DatasourceUnavailable``.
        sql_timeout: ``statement_timeout`` of SQL queries, in seconds.
    """

    scheme = "postgresql"
    exclusive = False
    capabilities = frozenset({"checks_revisions", "durable", "shared", "sql"})

    def __init__(
        self,
        url: str,
        conninfo: str,
        *,
        commit_batch: int = 5000,
        pool_size: int = 10,
        acquire_timeout: float = 5.0,
        sql_timeout: float = 30.0,
    ) -> None:
        super().__init__(url)
        self.conninfo = conninfo
        self.commit_batch = commit_batch
        self.pool_size = pool_size
        self.acquire_timeout = acquire_timeout
        self.sql_timeout = sql_timeout
        self._pool: Any = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._types: dict[str, dict[str, ValueType]] = {}
        self._committer = GroupCommitter(self._types, unavailable)
        self._engine: PostgresSqlEngine | None = None
        self._fresh = Freshness()
        self._closed = False
        self.commits = 0  # transactions committed (for benchmarks and tests)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> PostgresStore:
        try:
            import psycopg  # noqa: F401
            import psycopg_pool  # noqa: F401
        except ImportError as exc:
            raise DatasourceError(
                f"postgresql:// needs the postgres extra ({exc.name} is missing): "
                "pip install 'microlib-kernel[postgres]'"
            ) from None
        conninfo, own = split_url(url)
        try:
            options = {k: float(v) for k, v in own.items()}
        except ValueError:
            raise DatasourceError(
                f"datasource {redact_url(url)!r}: {', '.join(own)} must be numbers"
            ) from None
        return cls(
            url,
            conninfo,
            commit_batch=settings.commit_batch,
            pool_size=int(options.get("pool_size", 10)),
            acquire_timeout=options.get("acquire_timeout", 5.0),
            sql_timeout=options.get("sql_timeout", 30.0),
        )

    def describe(self) -> str:
        return f"postgresql: {redact_url(self.conninfo)}"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        from psycopg_pool import AsyncConnectionPool

        self._pool = AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=max(2, self.pool_size),
            open=False,
            timeout=self.acquire_timeout,
            kwargs={"autocommit": True, "prepare_threshold": None, "connect_timeout": 5},
            reconnect_timeout=3600.0,
            name="microlib",
        )
        try:
            await self._pool.open(wait=True, timeout=self.acquire_timeout)
        except Exception as exc:
            await self._pool.close()
            raise DatasourceUnavailable(
                f"cannot connect to {self.describe()}: {_first_line(exc)}"
            ) from None
        self._engine = PostgresSqlEngine(self.conninfo, self.sql_timeout, self.acquire_timeout)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def close(self) -> None:
        if self._closed or self._pool is None:
            self._closed = True
            return
        self._closed = True
        self._queue.put_nowait(_STOP)
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        if self._engine is not None:
            await asyncio.to_thread(self._engine.close)
        await self._pool.close()

    def lease_store(self) -> PostgresLeases:
        """Flow leases in ``microlib_leases``, on this store's pool."""
        return PostgresLeases(self._connection)

    def sql_engine(self) -> PostgresSqlEngine | None:
        return self._engine

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if self._closed or self._pool is None:
            raise DatasourceError(f"{self.describe()} is closed")
        try:
            conn = await checkout(self._pool, self._fresh, self.acquire_timeout)
            try:
                yield conn
            finally:
                self._fresh.mark(conn)
                await self._pool.putconn(conn)
        except Exception as exc:
            down = unavailable(exc)
            if down is not None:
                raise down from None
            raise

    # -- writes -----------------------------------------------------------------------

    async def _submit(self, ops: list[WriteOp], atomic: bool) -> Any:
        if self._closed:
            raise DatasourceError(f"{self.describe()} is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(PendingWrites(future, ops, atomic))
        return await future

    async def write(self, op: WriteOp) -> None:
        await self._submit([op], atomic=True)

    async def write_many(self, ops: Sequence[WriteOp]) -> None:
        if ops:
            await self._submit(list(ops), atomic=True)

    async def write_each(self, ops: Sequence[WriteOp]) -> list[BaseException | None]:
        if not ops:
            return []
        errors: list[BaseException | None] = await self._submit(list(ops), atomic=False)
        return errors

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            if first is _STOP:
                return
            batch: list[PendingWrites] = [first]
            count = len(first.ops)
            stop = False
            while count < self.commit_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                count += len(item.ops)
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug of ours: fail this group, keep the writer alive
                for item in batch:
                    item.errors = [DatasourceError(f"write failed: {exc}")] * len(item.ops)
                    settle(item)
            if stop:
                return

    async def _commit(self, batch: list[PendingWrites]) -> None:
        try:
            async with self._connection() as conn:
                tables = await self._committer.commit(conn, batch)
        except Exception as exc:  # no connection: every write of the group fails alone
            error = exc if isinstance(exc, DatasourceError) else DatasourceError(str(exc))
            for item in batch:
                item.errors = [error] * len(item.ops)
            tables = set()
        else:
            self.commits += 1
        for table in tables:
            self._bump(table)
        for item in batch:
            settle(item)

    # -- schema ---------------------------------------------------------------------------

    async def ensure_table(self, schema: TableSchema) -> SchemaChange:
        try:
            async with self._connection() as conn, conn.transaction():
                # Hosts publishing the same model at once take turns here.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('microlib:' || %s))", [schema.name]
                )
                change = await self._ensure(conn, schema)
        except (DatasourceError, DeployRefused):
            raise
        except Exception as exc:
            raise DatasourceError(
                f"cannot create or alter table {schema.name!r}: {_first_line(exc)}"
            ) from None
        self._committer.forget_statements()
        return change

    async def _ensure(self, conn: Any, schema: TableSchema) -> SchemaChange:
        cur = await conn.execute(_COLUMNS_SQL, [schema.name])
        existing = {row[0]: row[1] for row in await cur.fetchall()}
        name = quote(schema.name)
        types = {c.name: c.type for c in schema.columns}
        if not existing:
            cols = ", ".join(
                f"{quote(c.name)} {sql_type(c.type)}" + (" PRIMARY KEY" if c.name == "id" else "")
                for c in schema.columns
            )
            await conn.execute(f"CREATE TABLE {name} ({cols})")
            self._types[schema.name] = types
            return SchemaChange(created=True)
        added: list[str] = []
        altered: list[str] = []
        for col in schema.columns:
            have = existing.get(col.name)
            if have is None:
                await conn.execute(
                    f"ALTER TABLE {name} ADD COLUMN {quote(col.name)} {sql_type(col.type)}"
                )
                if col.default is not None:
                    fill = f"%s::{sql_type(col.type)}"
                    await conn.execute(
                        f"UPDATE {name} SET {quote(col.name)} = {fill}",
                        [encoder(col.type)(col.default)],
                    )
                added.append(col.name)
            elif have != catalog_name(col.type):
                await self._alter_type(conn, schema.name, col, have)
                altered.append(col.name)
        for col_name, have_type in existing.items():
            types.setdefault(col_name, guess(have_type))
        self._types[schema.name] = types
        return SchemaChange(added=tuple(added), altered=tuple(altered))

    async def _alter_type(self, conn: Any, table: str, col: Column, have: str) -> None:
        import psycopg

        new = sql_type(col.type)
        q = quote(col.name)
        using = f"to_jsonb({q})" if new == "JSONB" and have != "jsonb" else f"{q}::{new}"
        try:
            async with conn.transaction():  # a savepoint: the error is ours to explain
                await conn.execute(f"ALTER TABLE {quote(table)} ALTER {q} TYPE {new} USING {using}")
        except psycopg.Error as exc:
            if unavailable(exc) is not None:
                raise
            raise DeployRefused(
                f"cannot change {table}.{col.name} from {have} to {new}: stored rows do not "
                f"fit ({_first_line(exc)}); keep the old type, add a new field, or migrate "
                "the data first",
                field=col.name,
            ) from None

    async def columns(self, table: str) -> set[str]:
        async with self._connection() as conn:
            cur = await conn.execute(_COLUMNS_SQL, [table])
            return {row[0] for row in await cur.fetchall()}

    # -- reads ----------------------------------------------------------------------------

    async def _fetch(self, what: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            async with self._connection() as conn:
                cur = await conn.execute(sql, params)
                rows: list[tuple[Any, ...]] = await cur.fetchall()
                return rows
        except psycopg.DataError as exc:  # a filter value the column cannot hold
            raise BadQuery(f"{what}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise DatasourceError(f"{what} failed: {_first_line(exc)}") from None

    def _select(self, table: str) -> tuple[list[str], str]:
        cols = list(self._types.get(table, {}))
        return cols, ", ".join(quote(c) for c in cols)

    async def get(self, table: str, id: str) -> dict[str, Any] | None:
        if table not in self._types:
            return None
        cols, names = self._select(table)
        rows = await self._fetch(
            f"read {table}/{id}", f"SELECT {names} FROM {quote(table)} WHERE id = %s", [id]
        )
        return dict(zip(cols, rows[0], strict=True)) if rows else None

    def _where(self, table: str, filters: dict[str, Any]) -> tuple[str, list[Any]]:
        if not filters:
            return "", []
        types = self._types.get(table, {})
        parts, params = [], []
        for k, v in filters.items():
            if v is None:
                parts.append(f"{quote(k)} IS NULL")
            else:
                t = types.get(k)
                # Filter values are JSON values: cast them to the column's type.
                parts.append(f"{quote(k)} = %s::{sql_type(t)}" if t else f"{quote(k)} = %s")
                params.append(encoder(t)(v) if t else v)
        return " WHERE " + " AND ".join(parts), params

    async def query(self, table: str, query: Query) -> list[dict[str, Any]]:
        if table not in self._types:
            return []
        cols, names = self._select(table)
        where, params = self._where(table, query.filters)
        sql = f"SELECT {names} FROM {quote(table)}{where}{order_and_page(query)}"
        rows = await self._fetch(f"list {table}", sql, params)
        return [dict(zip(cols, row, strict=True)) for row in rows]

    async def count(self, table: str, filters: dict[str, Any]) -> int:
        if table not in self._types:
            return 0
        where, params = self._where(table, filters)
        rows = await self._fetch(
            f"count {table}", f"SELECT count(*) FROM {quote(table)}{where}", params
        )
        return int(rows[0][0])

    async def records(self, table: str) -> list[dict[str, Any]]:
        return await self.query(table, Query())


def unavailable(exc: BaseException) -> DatasourceUnavailable | None:
    """``DatasourceUnavailable`` if ``exc`` means the server cannot be reached."""
    import psycopg
    from psycopg_pool import PoolTimeout, TooManyRequests

    if isinstance(exc, DatasourceUnavailable):
        return exc
    if isinstance(exc, PoolTimeout | TooManyRequests):
        return DatasourceUnavailable(
            "PostgreSQL is unavailable (no working connection); retry shortly"
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.AdminShutdown):
        return DatasourceUnavailable(
            f"PostgreSQL is unavailable ({_first_line(exc)}); retry shortly"
        )
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
