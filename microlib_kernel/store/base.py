"""The ``DataSource`` port: what every store (memory, file, DuckDB, later PostgreSQL) does.

Records are plain JSON-able dicts keyed by column name (one column per top-level
field, plus the framework columns). Stores know tables and records, never model
classes: validation, hooks, events and caching belong to the host's repository.

Contract (checked by ``tests/contract``, which every store passes):

* ``write`` returns only once the operation is durable (committed); concurrent writes
  may be committed together in one transaction (group commit).
* ``get``/``query``/``count`` see every write whose ``write`` has returned.
* A write whose ``expect_revision`` does not match the stored revision raises
  :class:`~microlib_kernel.errors.Conflict` and changes nothing (stores shared between
  processes must check it themselves; stores owned by one process may rely on the
  repository, which serialises writes per instance).
* Unknown tables read as empty; ``ensure_table`` creates a table or adds the columns
  a schema gained, filling them with their defaults, and keeps removed columns.
* SQL is a capability: ``sql_engine()`` returns an engine or ``None``.

What a store does beyond that contract it declares in :attr:`DataSource.capabilities`
(names from :data:`CAPABILITIES`); the contract suite runs each optional test on the
stores that declare what it needs, and checks the declarations it can observe.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

from ..domain.query import Query
from ..domain.types import ValueType

if TYPE_CHECKING:
    from .leases import LeaseStore

WriteKind = Literal["upsert", "delete"]

__all__ = [
    "CAPABILITIES",
    "Column",
    "DataSource",
    "Query",
    "SchemaChange",
    "SqlEngine",
    "TableSchema",
    "WriteOp",
]

#: What a store may do beyond the contract every store meets, by name:
#:
#: * ``durable``: what was written through a URL naming a place (a file, a folder, a
#:   database) is there again after the store is closed and opened anew.
#: * ``checks_revisions``: the store itself refuses a write whose ``expect_revision``
#:   does not match (:class:`~microlib_kernel.errors.Conflict`); without it the
#:   repository's per-instance serialisation is the only check.
#: * ``sql``: :meth:`DataSource.sql_engine` gives the store's own SQL engine once open.
#: * ``shared``: several processes use the same data at once (not :attr:`exclusive`;
#:   :meth:`DataSource.lease_store` gives their shared flow leases).
CAPABILITIES = frozenset({"durable", "checks_revisions", "sql", "shared"})


@dataclass(frozen=True)
class Column:
    """A table column: a field's name, its value type and its default (JSON)."""

    name: str
    type: ValueType
    default: Any = None
    has_default: bool = False


@dataclass(frozen=True)
class TableSchema:
    """A model's table: its name (the endpoint) and its columns, ``id`` first."""

    name: str
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass
class WriteOp:
    """One write: upsert a full record, or delete an id.

    Attributes:
        expect_revision: the revision the stored record must have (``0``: must not exist;
            ``None``: unchecked).
    """

    kind: WriteKind
    table: str
    id: str
    record: dict[str, Any] | None = None
    expect_revision: int | None = None


class Repeated(Sequence[Any]):
    """One immutable value ``count`` times: a column of a bulk write whose rows all
    hold it (a ``create_many``'s ``created_at``, ``version``...). A store may write it
    once for all rows; as a sequence it is that value at every index."""

    __slots__ = ("length", "value")

    def __init__(self, value: Any, count: int) -> None:
        if isinstance(value, (list, dict, set)):
            raise TypeError("a repeated value must be immutable (each row owns its lists)")
        self.value, self.length = value, count

    def __len__(self) -> int:
        return self.length

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.value] * len(range(*index.indices(self.length)))
        range(self.length)[index]  # IndexError as a list gives it
        return self.value

    def __iter__(self) -> Iterator[Any]:
        return iter([self.value] * self.length)

    def __repr__(self) -> str:
        return f"Repeated({self.value!r}, {self.length})"


def records_of_columns(columns: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """One record per row of ``columns`` (values by field, all of one length)."""
    names = tuple(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


class FreshInserts(Sequence[WriteOp]):
    """New records (``expect_revision=0``) of one table with distinct ids: a
    ``create_many``'s writes.

    Any store takes them as a sequence of :class:`WriteOp`, each made when it is read.
    The DuckDB writer reads :attr:`columns` (or :attr:`records`) instead: it makes no op
    per row (~0.05 s per 100,000) and groups the records by fields only, without first
    folding the writes of one id together (0.035 s against 0.13 s).

    Made from columns (:meth:`of_columns`), every row has the same fields and no record
    dict is made unless a store reads :attr:`records` or an op: the DuckDB writer hands
    the columns to DuckDB as they are (about 0.15 s less per 100,000 rows than making
    the records, then taking them apart again).
    """

    __slots__ = ("_records", "columns", "ids", "table")

    def __init__(self, table: str, ids: Sequence[str], records: Sequence[dict[str, Any]]) -> None:
        if len(ids) != len(records):
            raise ValueError(f"{len(ids)} ids for {len(records)} records")
        self.table, self.ids = table, ids
        self._records: Sequence[dict[str, Any]] | None = records
        #: The rows' values by field (every row has every field), or ``None``.
        self.columns: dict[str, Sequence[Any]] | None = None

    @classmethod
    def of_columns(cls, table: str, columns: dict[str, Sequence[Any]]) -> FreshInserts:
        """Writes of the rows whose values by field are ``columns`` (``"id"`` among them)."""
        ids = columns["id"]
        if any(len(values) != len(ids) for values in columns.values()):
            raise ValueError("the columns of fresh inserts must all have one length")
        inserts = cls.__new__(cls)
        inserts.table, inserts.ids, inserts.columns = table, ids, columns
        inserts._records = None
        return inserts

    @property
    def records(self) -> Sequence[dict[str, Any]]:
        """One record per row (made from :attr:`columns` on first use)."""
        if self._records is None:
            assert self.columns is not None
            self._records = records_of_columns(self.columns)
        return self._records

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> WriteOp: ...
    @overload
    def __getitem__(self, index: slice) -> list[WriteOp]: ...
    def __getitem__(self, index: int | slice) -> WriteOp | list[WriteOp]:
        if isinstance(index, slice):
            return [self._op(i) for i in range(*index.indices(len(self)))]
        return self._op(range(len(self))[index])

    def __iter__(self) -> Iterator[WriteOp]:
        return map(self._op, range(len(self)))

    def _op(self, i: int) -> WriteOp:
        return WriteOp("upsert", self.table, self.ids[i], self.records[i], 0)


@dataclass(frozen=True)
class SchemaChange:
    """What ``ensure_table`` did."""

    created: bool = False
    added: tuple[str, ...] = ()
    altered: tuple[str, ...] = ()


class SqlEngine(abc.ABC):
    """Runs read-only SQL. Blocking: call it from a worker thread, not an event loop."""

    @abc.abstractmethod
    def execute(self, query: str, params: Any = None) -> Any:
        """Run one read-only statement; returns a ``SqlResult``."""

    @abc.abstractmethod
    def mirror(self, schema: TableSchema, records: Sequence[dict[str, Any]]) -> None:
        """Make ``records`` queryable as table ``schema.name`` (for stores without SQL)."""

    @abc.abstractmethod
    def drop_mirror(self, name: str) -> None:
        """Forget a mirrored table."""

    def execute_limited(self, query: str, params: Any, limits: Any) -> Any:
        """:meth:`execute` within ``limits`` (a ``SqlLimits``): time, rows, memory.

        Engines that cannot enforce limits run the query as :meth:`execute` does.
        """
        return self.execute(query, params)

    def interrupt_all(self) -> None:  # noqa: B027 - optional
        """Stop every query running now (the host is closing)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the engine holds."""


class DataSource(abc.ABC):
    """A store of records, one table per model.

    Args:
        url: the datasource URL it was opened from.
    """

    scheme: ClassVar[str]
    #: Whether this process is the only writer (then the repository's in-memory
    #: revision checks are enough).
    exclusive: ClassVar[bool] = True
    #: Whether every committed write bumps :meth:`change_count` before it is
    #: acknowledged (then responses can be cached until the count moves).
    counts_changes: ClassVar[bool] = False
    #: What this store does beyond the contract (names from :data:`CAPABILITIES`).
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Whether :meth:`write_many` reads :attr:`FreshInserts.columns` when they are
    #: given (then a bulk create makes no record per row); a store that reads records
    #: gets them made up front, which is cheaper than from columns.
    reads_columns: ClassVar[bool] = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._changes: dict[str, int] = {}

    def describe(self) -> str:
        """A short human description (``duckdb: /path/microlib.duckdb``)."""
        return self.url

    def change_count(self, table: str) -> int:
        """A counter bumped by every committed write to ``table`` (for SQL mirrors)."""
        return self._changes.get(table, 0)

    def _bump(self, table: str) -> None:
        self._changes[table] = self._changes.get(table, 0) + 1

    @abc.abstractmethod
    async def open(self) -> None:
        """Open files, connections and locks."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and release everything (idempotent)."""

    @abc.abstractmethod
    async def ensure_table(self, schema: TableSchema) -> SchemaChange:
        """Create the table, or add the columns it lacks (filled with defaults)."""

    @abc.abstractmethod
    async def columns(self, table: str) -> set[str]:
        """Names of the columns ``table`` has (empty if it does not exist)."""

    async def check_column_type(self, table: str, column: Column) -> list[str]:
        """Ids of stored rows whose value of ``column`` would not fit its new type.

        The default is for schemaless stores: values are validated by the model on read.
        """
        return []

    @abc.abstractmethod
    async def write(self, op: WriteOp) -> None:
        """Apply one write durably; concurrent calls may share a commit."""

    async def write_many(self, ops: Sequence[WriteOp]) -> None:
        """Apply many writes; durable on return. Stores override for bulk paths."""
        for op in ops:
            await self.write(op)

    async def write_each(self, ops: Sequence[WriteOp]) -> list[BaseException | None]:
        """Apply independent writes; each succeeds or fails alone (``None`` = written).

        Durable on return for every write reported ``None``.
        """
        import asyncio

        results = await asyncio.gather(*[self.write(op) for op in ops], return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

    @abc.abstractmethod
    async def get(self, table: str, id: str) -> dict[str, Any] | None:
        """The record with this id, or ``None``."""

    @abc.abstractmethod
    async def query(self, table: str, query: Query) -> list[dict[str, Any]]:
        """Records matching ``query``."""

    async def query_json(
        self,
        table: str,
        query: Query,
        columns: Sequence[str],
        needed: Callable[[list[tuple[str, int]]], list[str]] | None = None,
    ) -> list[tuple[str, int, str | None]] | None:
        """Records matching ``query`` as ``(id, revision, JSON text of columns)``: a fast path.

        Timestamps are ISO 8601 text; values are what :meth:`query` gives, as JSON.
        With ``needed``, the store may first find the ``(id, revision)`` of every row
        and call ``needed`` with them (on the caller's loop); rows whose id it does not
        return may then come without their JSON (``None``). ``None`` when this store
        has no such path for these columns (callers then use :meth:`query`). The
        default has none.
        """
        return None

    async def query_json_array(
        self, table: str, query: Query, columns: Sequence[str]
    ) -> tuple[int, str] | None:
        """Records matching ``query`` as ``(count, one JSON array of their objects)``.

        A fast path: what :meth:`query_json` renders, in the query's order, as one text
        (a list that no cached copy can serve needs no ids first, nor a Python object
        per row). ``None`` when this store has no such path for these columns. The
        default has none.
        """
        return None

    def json_batches(
        self, table: str, query: Query, columns: Sequence[str]
    ) -> AsyncGenerator[tuple[int, bytes], None] | None:
        """What :meth:`query_json_array` gives, as consecutive ``(count, JSON array)``
        batches of one snapshot, in the query's order: the store may read the next batch
        while the caller validates the last. ``None`` when this store has no such path
        for these columns (callers then use :meth:`query_json_array`). The default has
        none. Callers close the iterator (``contextlib.aclosing``) if they stop early.
        """
        return None

    @abc.abstractmethod
    async def count(self, table: str, filters: dict[str, Any]) -> int:
        """How many records match ``filters``."""

    @abc.abstractmethod
    async def records(self, table: str) -> list[dict[str, Any]]:
        """Every record of ``table`` (for SQL mirrors and exports)."""

    def lease_store(self) -> LeaseStore | None:
        """Where hosts sharing this datasource keep flow leases (``None``: not shared)."""
        return None

    def sql_engine(self) -> SqlEngine | None:
        """This store's own SQL engine, if it speaks SQL."""
        return None
