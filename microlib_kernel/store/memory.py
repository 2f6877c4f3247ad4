"""``memory://``: records in a dict. Fast, and gone when the process ends."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import Conflict
from .base import DataSource, Query, SchemaChange, TableSchema, WriteOp

if TYPE_CHECKING:
    from ..config import Settings


class MemoryStore(DataSource):
    """Keeps every record in memory (SQL runs over a mirror, see ``host.sql``)."""

    scheme = "memory"
    counts_changes = True
    capabilities = frozenset({"checks_revisions"})

    def __init__(self, url: str = "memory://") -> None:
        super().__init__(url)
        self._tables: dict[str, dict[str, dict[str, Any]]] = {}
        self._schemas: dict[str, TableSchema] = {}

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> MemoryStore:
        return cls(url)

    def describe(self) -> str:
        return "memory (not persisted)"

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ensure_table(self, schema: TableSchema) -> SchemaChange:
        old = self._schemas.get(schema.name)
        rows = self._tables.setdefault(schema.name, {})
        added: list[str] = []
        if old is not None:
            for col in schema.columns:
                if old.column(col.name) is None:
                    added.append(col.name)
                    for rec in rows.values():
                        rec.setdefault(col.name, copy.deepcopy(col.default))
            # Removed columns keep their data: merge old columns back in.
            kept = tuple(c for c in old.columns if schema.column(c.name) is None)
            schema = TableSchema(schema.name, schema.columns + kept)
        self._schemas[schema.name] = schema
        return SchemaChange(created=old is None, added=tuple(added))

    async def columns(self, table: str) -> set[str]:
        schema = self._schemas.get(table)
        names = set(schema.names) if schema else set()
        # Documents of a schemaless store share their keys; one is enough to know them.
        names.update(next(iter(self._tables.get(table, {}).values()), {}))
        return names

    def _check(self, op: WriteOp) -> None:
        if op.expect_revision is None:
            return
        current = self._tables.get(op.table, {}).get(op.id)
        have = 0 if current is None else int(current.get("revision") or 0)
        if have != op.expect_revision:
            raise Conflict(
                f"{op.table}/{op.id} is at revision {have}, not {op.expect_revision}",
                id=op.id,
                revision=have,
            )

    def _apply(self, op: WriteOp) -> None:
        rows = self._tables.setdefault(op.table, {})
        if op.kind == "delete":
            rows.pop(op.id, None)
        else:
            assert op.record is not None
            # Upsert merges: columns the record lacks (a removed field's data) are kept.
            old = rows.get(op.id)
            rows[op.id] = {**old, **op.record} if old else op.record
        self._bump(op.table)

    async def write(self, op: WriteOp) -> None:
        self._check(op)
        self._apply(op)

    async def write_many(self, ops: Sequence[WriteOp]) -> None:
        for op in ops:
            self._check(op)
        for op in ops:
            self._apply(op)

    async def get(self, table: str, id: str) -> dict[str, Any] | None:
        rec = self._tables.get(table, {}).get(id)
        return dict(rec) if rec is not None else None

    async def query(self, table: str, query: Query) -> list[dict[str, Any]]:
        return [dict(r) for r in select(self._tables.get(table, {}).values(), query)]

    async def count(self, table: str, filters: dict[str, Any]) -> int:
        return sum(1 for _ in _matching(self._tables.get(table, {}).values(), filters))

    async def records(self, table: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._tables.get(table, {}).values()]

    def tables(self) -> dict[str, TableSchema]:
        """The schemas this store knows."""
        return dict(self._schemas)


def _matching(records: Any, filters: dict[str, Any]) -> Any:
    for rec in records:
        if all(rec.get(k) == v for k, v in filters.items()):
            yield rec


def _sort_key(value: Any) -> tuple[int, Any]:
    # NULLs last, like DuckDB's default; mixed types compare by their text.
    if value is None:
        return (1, "")
    if isinstance(value, bool | int | float | str):
        return (0, value)
    return (0, str(value))


def _keyed(column: str) -> Any:
    def key(record: dict[str, Any]) -> tuple[int, Any]:
        return _sort_key(record.get(column))

    return key


def select(records: Any, query: Query) -> list[dict[str, Any]]:
    """Filter, order and page records in Python (the in-memory query engine)."""
    rows = list(_matching(records, query.filters))
    for column, descending in reversed(query.order):
        present = [r for r in rows if r.get(column) is not None]
        missing = [r for r in rows if r.get(column) is None]
        present.sort(key=_keyed(column), reverse=descending)
        rows = present + missing
    end = None if query.limit is None else query.offset + query.limit
    return rows[query.offset : end]
