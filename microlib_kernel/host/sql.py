"""SQL over every model table, whichever datasource holds it.

SQL is a capability of a datasource. The host runs queries on its default
datasource's engine when it has one (DuckDB), else on an in-memory DuckDB. Tables of
models on other datasources (``memory://``, ``file://``) are mirrored into that engine
before a query whenever they changed, so joins across datasources work. Results are
masked: an encrypted ``Secret`` value never leaves as its ciphertext.

Every query runs within :class:`~microlib_kernel.store.sql_guard.SqlLimits` (a time
limit, a memory limit; a row cap for answers over HTTP). Closing interrupts the queries
still running and waits for them, so a runaway query never keeps a connection busy
past ``host.close()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any

from ..store.base import SqlEngine, TableSchema
from ..store.sql_guard import SqlLimits
from .secrets import mask_result

if TYPE_CHECKING:
    from ..config import Settings
    from ..sql_result import SqlResult
    from ..store.base import DataSource

#: Seconds ``close()`` waits for interrupted queries to unwind.
CLOSE_WAIT = 10.0


def sql_limits(settings: Settings) -> SqlLimits:
    """The SQL limits named by a host's settings."""
    return SqlLimits(
        timeout=settings.sql_timeout,
        max_rows=settings.sql_max_rows,
        max_bytes=settings.sql_max_bytes,
        memory_limit=settings.sql_memory_limit,
        temp_limit=settings.sql_temp_limit,
    )


class SqlService:
    """Chooses the engine, keeps mirrors fresh, runs queries off the host loop.

    Args:
        primary: the host's default datasource.
        limits: the limits of every query (``max_rows`` applies where a caller asks).
    """

    def __init__(self, primary: DataSource, limits: SqlLimits | None = None) -> None:
        self.primary = primary
        self.limits = limits or SqlLimits()
        self._engine: SqlEngine | None = primary.sql_engine()
        self._own_engine = self._engine is None
        self._mirrored: dict[str, tuple[int, int]] = {}  # table -> (store id, change count)
        #: Whether some published table lives outside the engine (then queries refresh
        #: mirrors on the host loop first).
        self.mirrors = False
        self._running = 0
        self._idle = threading.Condition()

    def engine(self) -> SqlEngine:
        if self._engine is None:
            from ..store.sql import memory_sql_engine

            self._engine = memory_sql_engine()
        return self._engine

    def needs_mirror(self, store: DataSource) -> bool:
        return store is not self.primary or self._own_engine

    async def refresh(self, tables: list[tuple[TableSchema, DataSource]]) -> None:
        """Mirror the tables whose store changed since the last query (on the host loop)."""
        engine = self.engine()
        for schema, store in tables:
            if not self.needs_mirror(store):
                continue
            stamp = (id(store), store.change_count(schema.name))
            if self._mirrored.get(schema.name) == stamp:
                continue
            records = await store.records(schema.name)
            await asyncio.to_thread(engine.mirror, schema, records)
            self._mirrored[schema.name] = stamp

    def execute(
        self, query: str, params: Any = None, *, timeout: float | None = None, capped: bool = False
    ) -> SqlResult:
        """Run a read-only query (blocking; call it off the host loop).

        Args:
            query: one read-only statement.
            params: ``$name`` dict or ``?`` list.
            timeout: seconds instead of the configured time limit (``0``: none).
            capped: refuse answers over ``limits.max_rows`` or ``limits.max_bytes``
                (answers sent over HTTP).

        Encrypted secret values come out as ``"***"`` (see ``host/secrets.py``).
        """
        limits = self.limits
        if timeout is not None or not capped:
            limits = dataclasses.replace(
                limits,
                timeout=limits.timeout if timeout is None else timeout,
                max_rows=limits.max_rows if capped else 0,
                max_bytes=limits.max_bytes if capped else 0,
            )
        engine = self.engine()
        with self._idle:
            self._running += 1
        try:
            return mask_result(engine.execute_limited(query, params, limits))
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def interrupt(self) -> None:
        """Stop every query running now; later ones fail (the host is closing)."""
        if self._engine is not None:
            self._engine.interrupt_all()

    def close(self) -> None:
        """Stop running queries, wait for them to unwind, then close the engine."""
        if self._engine is not None:
            self._engine.interrupt_all()
            deadline = time.monotonic() + CLOSE_WAIT
            with self._idle:
                while self._running and time.monotonic() < deadline:
                    self._idle.wait(deadline - time.monotonic())
        if self._own_engine and self._engine is not None:
            self._engine.close()  # and its in-memory database
        self._engine = None if self._own_engine else self._engine
