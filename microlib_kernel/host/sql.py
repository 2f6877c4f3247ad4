"""SQL over every model table, whichever datasource holds it.

SQL is a capability of a datasource. The host runs queries on its default
datasource's engine when it has one (DuckDB), else on an in-memory DuckDB. Tables of
models on other datasources (``memory://``, ``file://``) are mirrored into that engine
before a query whenever they changed, so joins across datasources work. Results are
masked: an encrypted ``Secret`` value never leaves as its ciphertext.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..store.base import SqlEngine, TableSchema
from .secrets import mask_result

if TYPE_CHECKING:
    from ..store.base import DataSource
    from ..store.sql import SqlResult


class SqlService:
    """Chooses the engine, keeps mirrors fresh, runs queries off the host loop."""

    def __init__(self, primary: DataSource) -> None:
        self.primary = primary
        self._engine: SqlEngine | None = primary.sql_engine()
        self._own_engine = self._engine is None
        self._con: Any = None
        self._mirrored: dict[str, tuple[int, int]] = {}  # table -> (store id, change count)
        #: Whether some published table lives outside the engine (then queries refresh
        #: mirrors on the host loop first).
        self.mirrors = False

    def engine(self) -> SqlEngine:
        if self._engine is None:
            import duckdb

            from ..store.sql import DuckDBSqlEngine

            self._con = duckdb.connect(":memory:", config={"enable_external_access": False})
            self._engine = DuckDBSqlEngine(self._con)
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

    def execute(self, query: str, params: Any = None) -> SqlResult:
        """Run a read-only query (blocking; call it off the host loop).

        Encrypted secret values come out as ``"***"`` (see ``host/secrets.py``).
        """
        return mask_result(self.engine().execute(query, params))

    def close(self) -> None:
        if self._own_engine and self._engine is not None:
            self._engine.close()
            if self._con is not None:
                self._con.close()
        self._engine = None if self._own_engine else self._engine
