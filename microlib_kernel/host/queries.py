"""Read-only SQL over every model table, as ``Host.sql`` and ``POST /sql`` run it."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from .tables import table_schema

if TYPE_CHECKING:
    from ..sql_result import SqlResult
    from ..store.base import DataSource, TableSchema
    from .context import HostContext
    from .sql import SqlService


class SqlQueries:
    """Runs queries on the host's SQL engine, refreshing mirrored tables first.

    Args:
        ctx: the host's context (its registry names the tables).
        service: the SQL engine, its limits and mirrors.
    """

    def __init__(self, ctx: HostContext, service: SqlService) -> None:
        self.ctx = ctx
        self.service = service

    def note_store(self, store: DataSource) -> None:
        """A table now lives on ``store``: mirror it if the engine cannot read it in place."""
        if self.service.needs_mirror(store):
            self.service.mirrors = True

    def run(self, query: str, params: Any = None, *, timeout: float | None = None) -> SqlResult:
        """``Host.sql``: run ``query`` from any thread (see :meth:`Host.sql`)."""
        if self.ctx.loop.in_loop() or not self.service.mirrors:
            # Every table lives in the engine's own database: no mirror to refresh, so
            # the query runs right here (DuckDB gives each thread its own cursor).
            return self.service.execute(query, params, timeout=timeout)
        return self.ctx.loop.run(self.run_async(query, params, timeout=timeout))

    async def run_async(
        self, query: str, params: Any = None, *, timeout: float | None = None, capped: bool = False
    ) -> SqlResult:
        """:meth:`run` from the host loop (the query runs on a worker thread).

        ``capped`` refuses answers over ``sql_max_rows`` (answers sent over HTTP).
        """
        await self.service.refresh(self.tables())
        return await asyncio.to_thread(
            functools.partial(self.service.execute, query, params, timeout=timeout, capped=capped)
        )

    def tables(self) -> list[tuple[TableSchema, DataSource]]:
        """Every model table (unpublished ones too) and the store it lives on."""
        tables = []
        for entry in self.ctx.registry.entries(published_only=False):
            repo = self.ctx.repositories.find(entry.endpoint)
            if repo is not None:
                tables.append((table_schema(entry.latest()), repo.store))
        return tables
