"""``duckdb:///path.duckdb``: the default datasource, one typed table per model.

Writes go through one writer thread that **commits in groups**: it takes every write
waiting in its queue, keeps the last write per id, and applies them with one bulk
``DELETE`` and one bulk ``INSERT ... ON CONFLICT DO UPDATE`` per table in a single
transaction. A write's future resolves only after that transaction commits (durable
when acknowledged). If a group fails, its writes are retried one by one so a bad write
fails alone. Schema changes (DDL) go through the same thread, in order with writes.

A single write is held until its event loop's turn ends. If no other write was made in
that turn and the writer has nothing unfinished, it is committed on the caller's
thread instead (the "direct write"): the round trip to the writer thread and back costs
~0.1-0.2 ms, a tenth of a one-row commit. It holds the writer's lock, so writes never
overlap. It is left to the writer when its commit could hold the event loop for long:
near one of DuckDB's automatic checkpoints (the write-ahead log close to
``checkpoint_threshold``), or for a row over ~64 KiB.

Reads run on a small thread pool, each thread with its own cursor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ..domain.types import ValueType
from ..errors import Conflict, DatasourceError, DatasourceLocked, DeployRefused, ValidationFailed
from ..gc_pause import paused_gc
from .base import Column, DataSource, FreshInserts, Query, SchemaChange, TableSchema, WriteOp
from .duckdb_bulk import (
    ARROW_MIN_ROWS,
    JSON_BATCH_ROWS,
    arrow,
    arrow_insert,
    arrow_insert_columns,
    json_array_bytes,
    json_array_sql,
    json_row_expr,
    json_rows_sql,
    repeated_columns,
    unnest_insert_sql,
    values_insert_sql,
)
from .duckdb_types import UnstorableValue, encoder, param_expr, quote, row_encoder, sql_type
from .filelock import WriterLock
from .registry import url_path
from .sql import DuckDBSqlEngine, decode_rows
from .sql_text import order_and_page

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger("microlib_kernel.store.duckdb")
T = TypeVar("T")
_STOP = object()
#: DuckDB checkpoints when a commit takes its write-ahead log past this (set on open).
CHECKPOINT_WAL_BYTES = 16 * 2**20
#: A row larger than this (its text and the items of its lists and objects, roughly)
#: commits on the writer thread: ~10 ms per MiB that the caller's loop would wait.
_DIRECT_ROW_BYTES = 64 * 2**10
#: A direct write needs this much room left in the log (a row of a few MiB goes through
#: the writer thread near the threshold, where its checkpoint blocks no event loop).
_DIRECT_WAL_ROOM = 4 * 2**20
#: Rows of bulk inserts after which an idle writer checkpoints. DuckDB checkpoints on
#: its own each 16 MiB of log, but a bulk insert writes its rows to the database file
#: and logs little, so that may never come: the rows stay uncheckpointed (not yet
#: compressed), and a GROUP BY over 1M of them took 1.4x its time on the same table
#: checkpointed (``bench/sql_groupby.py``). Not after every bulk write: a checkpoint
#: costs time and leaves its buffers with the allocator (+12 MiB of RSS after one of
#: 100,000 rows, ``bench/memory_rss.py``).
CHECKPOINT_BULK_ROWS = 250_000
#: Parsed bulk statements kept (by table, columns and which columns hold one value).
_STATEMENTS_KEPT = 512


@dataclass
class _Pending:
    """A queued write (``op``) or DDL job (``job``) and where to report its outcome."""

    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    op: WriteOp | None = None
    job: Callable[[Any], Any] | None = None
    # Writes sharing one future. ``atomic``: all commit or none (the future fails);
    # otherwise each succeeds or fails alone and the result lists one error (or None)
    # per op instead of raising.
    ops: Sequence[WriteOp] | None = None  # FreshInserts as they came, else a list
    atomic: bool = False

    def all_ops(self) -> Sequence[WriteOp]:
        if self.ops is not None:
            return self.ops
        return [self.op] if self.op is not None else []


class DuckDBStore(DataSource):
    """DuckDB file (or ``:memory:``) with group commit.

    Args:
        url: the datasource URL.
        path: the database file, or ``None`` for an in-memory database.
        commit_batch: the most writes one transaction takes.
    """

    scheme = "duckdb"
    counts_changes = True
    # Single-writer: the repository checks revisions, so this store does not.
    capabilities = frozenset({"durable", "sql"})
    reads_columns = True

    def __init__(self, url: str, path: Path | None, *, commit_batch: int = 5000) -> None:
        super().__init__(url)
        self.path = path
        self.commit_batch = commit_batch
        self._con: Any = None
        self._lock: WriterLock | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        # Held by whoever writes: the writer thread for a batch, or a direct write.
        self._writing = threading.Lock()
        # Items queued and not yet done by the writer (a direct write waits for none).
        self._unfinished = 0
        self._count_lock = threading.Lock()
        self._held_lock = threading.Lock()
        self._write_cur: Any = None
        # The write cursor of a create alone (see _apply_one): DuckDB's optimizer off.
        self._row_cur: Any = None
        # Rows written by bulk inserts since the writer last checkpointed.
        self._bulk_rows = 0
        # Single writes made in the current turn of each event loop (direct writes).
        self._held: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._wal = Path(f"{path}.wal") if path is not None else None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._cursors: list[Any] = []
        self._cursor_lock = threading.Lock()
        self._types: dict[str, dict[str, ValueType]] = {}
        self._statements: dict[tuple[str, tuple[str, ...], bool, frozenset[str]], Any] = {}
        self._row_inserts: dict[
            tuple[str, tuple[str, ...]], tuple[Any, tuple[Callable[[Any], Any], ...]]
        ] = {}
        self._engine: DuckDBSqlEngine | None = None
        self._closed = False
        self.commits = 0  # transactions committed (for benchmarks and tests)
        self.direct_writes = 0  # writes made on the caller's thread (committed or failed)

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> DuckDBStore:
        return cls(url, url_path(url, settings), commit_batch=settings.commit_batch)

    def describe(self) -> str:
        return f"duckdb: {self.path or ':memory:'}"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        import duckdb

        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatasourceError(f"cannot create {self.path.parent}: {exc}") from None
            self._lock = WriterLock(self.path)
            self._lock.acquire(self.path)
        try:
            self._con = duckdb.connect(
                str(self.path) if self.path else ":memory:",
                config={
                    "enable_external_access": False,
                    # Stated, not assumed: a direct write checks the log against it.
                    "checkpoint_threshold": f"{CHECKPOINT_WAL_BYTES // 2**20}MiB",
                },
            )
        except duckdb.Error as exc:
            if self._lock:
                self._lock.release()
            text = str(exc)
            if "lock" in text.lower():
                raise DatasourceLocked(
                    f"{self.path} is locked by another program: {text}"
                ) from None
            raise DatasourceError(f"cannot open {self.path}: {text}") from None
        self._engine = DuckDBSqlEngine(self._con)
        self._write_cur = self._con.cursor()
        self._row_cur = self._con.cursor()
        self._row_cur.execute("PRAGMA disable_optimizer")
        self._readers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="microlib-read")
        self._writer = threading.Thread(
            target=self._write_loop, name=f"microlib-writer:{self.path}", daemon=True
        )
        self._writer.start()

    async def close(self) -> None:
        if self._closed or self._con is None:
            self._closed = True
            return
        self._closed = True
        # Writes held for this turn are queued ahead of the stop: a write begun before
        # close() commits, as one already queued does.
        with self._held_lock:
            held = [item for items in self._held.values() for item in items]
            self._held.clear()
        for item in held:
            self._enqueue(item)
        self._enqueue(_STOP)
        if self._writer is not None:
            # A plain join, not to_thread: close() must also work from atexit handlers,
            # when the default executor is already gone. The writer drains quickly.
            self._writer.join()
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        if self._engine is not None:
            self._engine.close()
        with self._cursor_lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except Exception:
                    pass
        try:
            self._con.execute("CHECKPOINT")
        except Exception:
            pass  # the WAL is replayed on the next open
        self._con.close()
        if self._lock is not None:
            self._lock.release()

    def sql_engine(self) -> DuckDBSqlEngine | None:
        return self._engine

    def memory_bytes(self) -> int:
        """The memory DuckDB itself accounts for (``duckdb_memory()``: tables, indexes,
        buffers), for benchmarks that tell it from the Python heap's."""
        if self._con is None or self._closed:
            return 0
        cur = self._con.cursor()
        try:
            row = cur.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
        finally:
            cur.close()
        return int(row[0] or 0) if row else 0

    # -- the writer ----------------------------------------------------------------------

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise DatasourceError(f"{self.describe()} is closed")

    def _submit(self, item: _Pending) -> asyncio.Future[Any]:
        self._refuse_if_closed()
        # Writes this loop holds for its turn were made first: they go first.
        with self._held_lock:
            held = self._held.pop(item.loop, None)
        for earlier in held or ():
            self._enqueue(earlier)
        self._enqueue(item)
        return item.future

    def _enqueue(self, item: Any) -> None:
        with self._count_lock:
            self._unfinished += 1
        self._queue.put(item)

    def _write_loop(self) -> None:
        cur = self._write_cur
        try:
            while True:
                batch, stop = self._next_batch()
                outcomes: list[tuple[_Pending, Any, BaseException | None]] = []
                with self._writing:
                    self._run_batch(cur, batch, outcomes.extend)
                    with self._count_lock:
                        self._unfinished -= len(batch) + stop
                # Reported once the lock is free: a caller's next write may go direct.
                _resolve(outcomes)
                del outcomes
                if self._bulk_rows >= CHECKPOINT_BULK_ROWS and self._queue.empty():
                    self._checkpoint(cur)
                # No reference to the batch survives the wait for the next one: it holds
                # the records of the last write (~10 MB for a create_many of 10,000 rows).
                del batch
                if stop:
                    return
        finally:
            with self._writing:
                self._write_cur = None
                cur.close()
                self._row_cur.close()

    def _checkpoint(self, cur: Any) -> None:
        """Checkpoint after bulk inserts, once they are acknowledged and nothing waits.

        A write that comes meanwhile waits for it (~0.1 s per 100,000 rows); a
        checkpoint that cannot run now (a reader's open transaction) is left to the next
        one, as DuckDB's own automatic checkpoint is.
        """
        with self._writing:
            self._bulk_rows = 0
            try:
                cur.execute("CHECKPOINT")
            except Exception as exc:
                log.debug("checkpoint after bulk inserts skipped: %s", exc)

    def _hold(self, item: _Pending) -> None:
        """Keep a single write until the loop's current turn ends (see the module doc)."""
        with self._held_lock:
            held = self._held.get(item.loop)
            if held is not None:
                held.append(item)
                return
            self._held[item.loop] = [item]
        item.loop.call_soon(self._release, item.loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        """The turn is over: one write alone may commit here; more go to the writer."""
        with self._held_lock:
            items = self._held.pop(loop, None)
        if not items:
            return  # close() or a bulk write queued them already
        if len(items) == 1 and self._write_directly(items[0]):
            return
        for item in items:
            if not self._closed:
                self._enqueue(item)
            elif not item.future.done():
                item.future.set_exception(DatasourceError(f"{self.describe()} is closed"))

    def _write_directly(self, item: _Pending) -> bool:
        """Commit ``item`` on this thread if the writer is idle (``False``: not done)."""
        if self._closed or self._unfinished or not self._wal_has_room():
            return False
        if item.op is None or (item.op.record is not None and not _small(item.op.record)):
            return False  # a large row's commit would hold this loop for milliseconds
        if not self._writing.acquire(blocking=False):
            return False  # the writer thread is busy: it takes this write next
        try:
            # Checked again with the lock held: the writer takes a batch from the
            # queue before it takes the lock, and what it took must commit first.
            if self._write_cur is None or self._unfinished:
                return False
            self._commit_writes(self._write_cur, [item], resolve=_settle)
            self.direct_writes += 1
        finally:
            self._writing.release()
        return True

    def _wal_has_room(self) -> bool:
        if self._wal is None:
            return True  # in memory: no log, no checkpoint
        try:
            size = os.stat(self._wal).st_size
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return size + _DIRECT_WAL_ROOM < CHECKPOINT_WAL_BYTES

    def _next_batch(self) -> tuple[list[_Pending], bool]:
        """The writes waiting (blocks for the first), and whether close() was asked for."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        while len(batch) < self.commit_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _run_batch(self, cur: Any, batch: list[_Pending], report: _Report) -> None:
        # Writes between DDL jobs commit together; jobs run alone, in order.
        writes: list[_Pending] = []
        for item in batch:
            if item.job is None:
                writes.append(item)
                continue
            if writes:
                self._commit_writes(cur, writes, report)
                writes = []
            try:
                report([(item, item.job(cur), None)])
            except Exception as exc:
                _rollback(cur)
                report([(item, None, exc)])
        if writes:
            self._commit_writes(cur, writes, report)

    def _commit_writes(self, cur: Any, items: list[_Pending], resolve: _Report) -> None:
        """Commit ``items`` in one transaction (each alone if that fails); ``resolve``
        takes the outcomes."""
        ops: Sequence[WriteOp]
        if len(items) == 1:
            ops = items[0].all_ops()  # FreshInserts stay as they are: no op per row
        else:
            ops = [op for item in items for op in item.all_ops()]
        try:
            if len(ops) == 1:
                self._apply_one(cur, ops[0])
            else:
                # A bulk write makes key tuples and Arrow input per row that die with
                # it: the collections they would trigger free nothing (gc_pause.py).
                # Nothing of it survives, so nothing is promoted: what the host loop
                # makes while DuckDB inserts without the GIL stays young.
                with paused_gc(len(ops), promote=False):
                    self._apply(cur, ops)
        except Exception as exc:
            _rollback(cur)
            if len(items) > 1:
                for item in items:  # isolate the failure: each item in its own transaction
                    self._commit_writes(cur, [item], resolve)
                return
            item = items[0]
            if item.ops is not None and not item.atomic and len(item.ops) > 1:
                self._isolate_ops(cur, item, resolve)
                return
            error = _storage_error(ops[0] if len(ops) == 1 else None, exc)
            if item.ops is not None and not item.atomic:
                resolve([(item, [error], None)])
            else:
                resolve([(item, None, error)])
            return
        resolve([(i, _success(i), None) for i in items])

    def _isolate_ops(self, cur: Any, item: _Pending, resolve: _Report) -> None:
        """Independent writes of one item, each in its own transaction."""
        errors: list[BaseException | None] = []
        for op in item.all_ops():
            try:
                self._apply(cur, [op])
                errors.append(None)
            except Exception as exc:
                _rollback(cur)
                errors.append(_storage_error(op, exc))
        resolve([(item, errors, None)])

    def _apply_one(self, cur: Any, op: WriteOp) -> None:
        """:meth:`_apply` of one write, a transaction of its own; a create (the POST at
        c=1) skips its grouping.

        A create is one ``INSERT ... VALUES``, which DuckDB's optimizer has nothing to
        do for: it runs on a cursor with the optimizer off, where its passes cost ~14%
        of the statement's instructions and ~10% of its time on a file
        (``bench/write_path.py --optimizer``). So does the lone ``INSERT`` of a group
        commit's few creates (:meth:`_apply`). Every other statement keeps it: a
        ``DELETE ... WHERE id IN`` or an upsert may need it.
        """
        if op.kind != "upsert" or op.expect_revision != 0 or op.record is None:
            self._apply(cur, [op])
            return
        self._upsert(self._row_cur, op.table, tuple(op.record), [op.record], insert_only=True)
        self._bump(op.table)
        self.commits += 1

    def _apply(self, cur: Any, ops: Sequence[WriteOp]) -> None:
        Groups = dict[tuple[bool, tuple[str, ...]], list[dict[str, Any]]]
        tables: dict[str, tuple[list[str], Groups]] = {}
        if isinstance(ops, FreshInserts) and ops.columns is not None:
            self._insert_columns(cur, ops)  # one statement
            self._bump(ops.table)
            self.commits += 1
            return
        if isinstance(ops, FreshInserts):  # new records of one table, distinct ids
            groups: Groups = {}
            for record in ops.records:
                # By fields still: a model's dump may leave some out (exclude_if).
                groups.setdefault((True, tuple(record)), []).append(record)
            tables[ops.table] = ([], groups)
            ops = ()
        final: dict[tuple[str, str], WriteOp] = {}
        rewritten: set[tuple[str, str]] = set()
        for op in ops:
            if (op.table, op.id) in final:
                rewritten.add((op.table, op.id))
            final[(op.table, op.id)] = op  # the last write per id wins
        for (table, rid), op in final.items():
            deletes, upserts = tables.setdefault(table, ([], {}))
            if op.kind == "delete":
                deletes.append(rid)
            else:
                assert op.record is not None
                # A create (expect_revision 0) needs no conflict handling: a plain
                # INSERT is markedly cheaper than INSERT ... ON CONFLICT.
                # ...unless an earlier write of the batch (a delete) was folded into it.
                fresh = op.expect_revision == 0 and (table, rid) not in rewritten
                key = (fresh, tuple(op.record))
                upserts.setdefault(key, []).append(op.record)
        statements = sum(bool(d) + len(g) for d, g in tables.values())
        # One statement is atomic on its own: skip BEGIN/COMMIT, two more round trips
        # that each need the GIL back while the host loop is busy serving requests.
        single = statements == 1
        if not single:
            cur.execute("BEGIN")
        for table, (deletes, groups) in tables.items():
            if deletes:
                cur.execute(
                    f"DELETE FROM {quote(table)} WHERE id IN (SELECT unnest($1::VARCHAR[]))",
                    [deletes],
                )
            for (insert_only, columns), records in groups.items():
                # One INSERT of a few new rows (a group commit of creates) is a
                # transaction of its own: the row cursor takes it, as a create alone.
                alone = single and insert_only and len(records) < ARROW_MIN_ROWS
                self._upsert(self._row_cur if alone else cur, table, columns, records, insert_only)
        if not single:
            cur.execute("COMMIT")
        # After the commit: a reader that sees the new count must see the new rows.
        for table in tables:
            self._bump(table)
        self.commits += 1

    def _upsert(
        self,
        cur: Any,
        table: str,
        columns: tuple[str, ...],
        records: list[dict[str, Any]],
        insert_only: bool = False,
        arrow_tried: bool = False,
    ) -> None:
        types = self._registered(table)
        cols = [c for c in columns if c in types]
        bulk = insert_only and len(records) >= ARROW_MIN_ROWS and not arrow_tried
        if bulk and arrow_insert(cur, table, cols, types, records):
            self._bulk_rows += len(records)
            return
        if insert_only and len(records) == 1:
            self._insert_row(cur, table, cols, types, records[0])
            return
        values = {c: [r.get(c) for r in records] for c in cols}
        repeated = repeated_columns(cols, types, values)
        key = (table, tuple(cols), insert_only, repeated)
        statement = self._statements.get(key)
        if statement is None:
            sql = unnest_insert_sql(table, cols, types, repeated)
            if not insert_only:
                updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in cols if c != "id")
                sql += f" ON CONFLICT (id) DO UPDATE SET {updates}"
            if len(self._statements) >= _STATEMENTS_KEPT:
                self._statements.clear()  # shapes beyond the usual few: start again
            statement = self._statements[key] = _parsed(sql)  # as _insert_row's
        params = []
        for c in cols:
            enc = encoder(types[c])
            params.append(enc(values[c][0]) if c in repeated else list(map(enc, values[c])))
        cur.execute(statement, params)

    def _insert_columns(self, cur: Any, inserts: FreshInserts) -> None:
        """New rows given by column (every row has every field): straight into DuckDB,
        no record per row, when pyarrow is there and the rows are many."""
        assert inserts.columns is not None
        table, columns = inserts.table, inserts.columns
        types = self._registered(table)
        known = {c: values for c, values in columns.items() if c in types}
        tried = len(inserts) >= ARROW_MIN_ROWS
        if tried and arrow_insert_columns(cur, table, types, known):
            self._bulk_rows += len(inserts)
            return
        records = list(inserts.records)
        self._upsert(cur, table, tuple(columns), records, insert_only=True, arrow_tried=tried)

    def _registered(self, table: str) -> dict[str, ValueType]:
        """The column types of ``table`` (refused if no model published it)."""
        types = self._types.get(table)
        if types is None:
            raise DatasourceError(f"table {table!r} is not registered (publish its model first)")
        return types

    def _insert_row(
        self,
        cur: Any,
        table: str,
        cols: list[str],
        types: dict[str, ValueType],
        record: dict[str, Any],
    ) -> None:
        """One new row (a create): the statement and its encoders are made once per shape.

        The statement is kept parsed: DuckDB binds and plans it again at each execution
        (against the catalog of that moment), but parsing its text cost ~14% of the
        instructions of the whole insert (``bench/write_path.py --optimizer
        --instructions``).
        """
        key = (table, tuple(cols))
        known = self._row_inserts.get(key)
        if known is None:
            encoders = tuple(row_encoder(types[c]) for c in cols)
            known = self._row_inserts[key] = (
                _parsed(values_insert_sql(table, cols, types)),
                encoders,
            )
        statement, encoders = known
        cur.execute(statement, [enc(record.get(c)) for c, enc in zip(cols, encoders, strict=True)])

    async def write(self, op: WriteOp) -> None:
        self._refuse_if_closed()
        loop = asyncio.get_running_loop()
        item = _Pending(loop.create_future(), loop, op=op)
        self._hold(item)
        await item.future

    async def write_many(self, ops: Sequence[WriteOp]) -> None:
        # One queue item, one future, one transaction: all the writes or none.
        if not ops:
            return
        loop = asyncio.get_running_loop()
        kept = ops if isinstance(ops, FreshInserts) else list(ops)
        await self._submit(_Pending(loop.create_future(), loop, ops=kept, atomic=True))

    async def write_each(self, ops: Sequence[WriteOp]) -> list[BaseException | None]:
        # One queue item and one future for the lot; each op still succeeds or fails alone.
        if not ops:
            return []
        loop = asyncio.get_running_loop()
        errors: list[BaseException | None] = await self._submit(
            _Pending(loop.create_future(), loop, ops=list(ops))
        )
        return errors

    async def _run_job(self, job: Callable[[Any], Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await self._submit(_Pending(loop.create_future(), loop, job=job))

    # -- schema ---------------------------------------------------------------------------

    async def ensure_table(self, schema: TableSchema) -> SchemaChange:
        change: SchemaChange = await self._run_job(lambda cur: self._ensure(cur, schema))
        return change

    def _ensure(self, cur: Any, schema: TableSchema) -> SchemaChange:
        name = quote(schema.name)
        existing = {
            row[0]: row[1]
            for row in cur.execute(
                "SELECT column_name, data_type FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'main' "
                "AND table_name = ?",
                [schema.name],
            ).fetchall()
        }
        types = self._types.setdefault(schema.name, {})
        if not existing:
            cols = ", ".join(
                f"{quote(c.name)} {sql_type(c.type)}" + (" PRIMARY KEY" if c.name == "id" else "")
                for c in schema.columns
            )
            cur.execute(f"CREATE TABLE {name} ({cols})")
            types.update({c.name: c.type for c in schema.columns})
            return SchemaChange(created=True)
        added: list[str] = []
        altered: list[str] = []
        cur.execute("BEGIN")
        for col in schema.columns:
            want = cur.execute(f"SELECT typeof(CAST(NULL AS {sql_type(col.type)}))").fetchone()[0]
            have = existing.get(col.name)
            if have is None:
                cur.execute(f"ALTER TABLE {name} ADD COLUMN {quote(col.name)} {sql_type(col.type)}")
                if col.default is not None:
                    enc = encoder(col.type)
                    cur.execute(
                        f"UPDATE {name} SET {quote(col.name)} = (SELECT {param_expr(1, col.type)})",
                        [[enc(col.default)]],
                    )
                added.append(col.name)
            elif have != want:
                self._alter_type(cur, schema.name, col, have)
                altered.append(col.name)
        cur.execute("COMMIT")
        types.update({c.name: c.type for c in schema.columns})
        self._statements.clear()  # column types may have changed
        self._row_inserts.clear()
        for col_name, have_type in existing.items():
            types.setdefault(col_name, _guess(have_type))
        return SchemaChange(added=tuple(added), altered=tuple(altered))

    def _alter_type(self, cur: Any, table: str, col: Column, have: str) -> None:
        new = sql_type(col.type)
        q = quote(col.name)
        expr = f"to_json({q})" if new == "JSON" else f"TRY_CAST({q} AS {new})"
        bad = cur.execute(
            f"SELECT id FROM {quote(table)} WHERE {q} IS NOT NULL AND ({expr}) IS NULL LIMIT 10"
        ).fetchall()
        if bad:
            cur.execute("ROLLBACK")
            raise DeployRefused(
                f"cannot change {table}.{col.name} from {have} to {new}: stored rows do not "
                f"fit (ids {', '.join(r[0] for r in bad)}); keep the old type, add a new "
                "field, or migrate the data first",
                field=col.name,
                ids=[r[0] for r in bad],
            )
        using = f"to_json({q})" if new == "JSON" else f"CAST({q} AS {new})"
        cur.execute(f"ALTER TABLE {quote(table)} ALTER {q} TYPE {new} USING {using}")

    async def columns(self, table: str) -> set[str]:
        sql = (
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = 'main' AND table_name = ?"
        )
        rows = await self._read(lambda cur: cur.execute(sql, [table]).fetchall())
        return {r[0] for r in rows}

    async def check_column_type(self, table: str, column: Column) -> list[str]:
        new = sql_type(column.type)
        q = quote(column.name)
        expr = f"to_json({q})" if new == "JSON" else f"TRY_CAST({q} AS {new})"

        def probe(cur: Any) -> list[str]:
            exists = cur.execute(
                "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'main' AND table_name = ? AND column_name = ?",
                [table, column.name],
            ).fetchone()[0]
            if not exists:
                return []
            rows = cur.execute(
                f"SELECT id FROM {quote(table)} WHERE {q} IS NOT NULL AND ({expr}) IS NULL LIMIT 10"
            ).fetchall()
            return [r[0] for r in rows]

        return await self._read(probe)

    # -- reads ----------------------------------------------------------------------------

    def _cursor(self) -> Any:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cursor = cur
            with self._cursor_lock:
                self._cursors.append(cur)
        return cur

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        if self._closed or self._readers is None:
            raise DatasourceError(f"{self.describe()} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._cursor()))

    def _select(self, table: str) -> tuple[list[str], str]:
        types = self._types.get(table, {})
        cols = list(types)
        return cols, ", ".join(quote(c) for c in cols)

    async def get(self, table: str, id: str) -> dict[str, Any] | None:
        if table not in self._types:
            return None
        cols, names = self._select(table)
        sql = f"SELECT {names} FROM {quote(table)} WHERE id = ?"
        rows = await self._read(lambda cur: cur.execute(sql, [id]).fetchall())
        recs = decode_rows(cols, self._types[table], rows)
        return recs[0] if recs else None

    def _where(self, filters: dict[str, Any]) -> tuple[str, list[Any]]:
        if not filters:
            return "", []
        parts, params = [], []
        for k, v in filters.items():
            if v is None:
                parts.append(f"{quote(k)} IS NULL")
            else:
                parts.append(f"{quote(k)} = ?")
                params.append(v)
        return " WHERE " + " AND ".join(parts), params

    def _query_sql(self, table: str, select: str, query: Query) -> tuple[str, list[Any]]:
        where, params = self._where(query.filters)
        return f"SELECT {select} FROM {quote(table)}{where}{order_and_page(query)}", params

    async def query(self, table: str, query: Query) -> list[dict[str, Any]]:
        if table not in self._types:
            return []
        cols, names = self._select(table)
        sql, params = self._query_sql(table, names, query)
        try:
            rows = await self._read(lambda cur: cur.execute(sql, params).fetchall())
        except Exception as exc:
            raise DatasourceError(f"list {table} failed: {exc}") from None
        return decode_rows(cols, self._types[table], rows)

    async def query_json(
        self,
        table: str,
        query: Query,
        columns: Sequence[str],
        needed: Callable[[list[tuple[str, int]]], list[str]] | None = None,
    ) -> list[tuple[str, int, str | None]] | None:
        types = self._types.get(table)
        if types is None:
            return []
        expr = json_row_expr([c for c in columns if c in types], types)
        if expr is None:
            return None
        sql, params = self._query_sql(table, f"id, revision, {expr}", query)
        try:
            if needed is None:
                rows = await self._read(lambda cur: cur.execute(sql, params).fetchall())
                return cast(list[tuple[str, int, str | None]], rows)
            return await self._query_json_needed(table, query, expr, sql, params, needed)
        except DatasourceError:
            raise
        except Exception as exc:
            raise DatasourceError(f"list {table} failed: {exc}") from None

    async def query_json_array(
        self, table: str, query: Query, columns: Sequence[str]
    ) -> tuple[int, str] | None:
        types = self._types.get(table)
        if types is None:
            return 0, "[]"
        expr = json_row_expr([c for c in columns if c in types], types)
        if expr is None:
            return None
        sql, params = json_array_sql(table, expr, query, self._where(query.filters))
        try:
            count, text = await self._read(lambda cur: cur.execute(sql, params).fetchone())
        except Exception as exc:
            raise DatasourceError(f"list {table} failed: {exc}") from None
        return int(count), f"[{text or ''}]"

    def json_batches(
        self, table: str, query: Query, columns: Sequence[str]
    ) -> AsyncGenerator[tuple[int, bytes], None] | None:
        types = self._types.get(table)
        if types is None or arrow() is None:
            return None
        if query.limit is not None and query.limit <= JSON_BATCH_ROWS:
            # One batch at most: nothing to overlap, and the one-array query is ~1 ms
            # cheaper for a page (no Arrow reader, one hop).
            return None
        expr = json_row_expr([c for c in columns if c in types], types)
        if expr is None:
            return None
        sql, params = json_rows_sql(table, expr, query, self._where(query.filters))
        return self._json_batches(table, sql, params)

    async def _json_batches(
        self, table: str, sql: str, params: list[Any]
    ) -> AsyncGenerator[tuple[int, bytes], None]:
        """The rows of one query (one snapshot), a batch at a time. The next batch is
        read in a reader thread, where DuckDB runs without the GIL, while the caller
        validates the last one on its loop.

        The first job reads the first batch, and the second one too only when the first
        is short (then it is normally the last): a list of one batch costs one hop to a
        reader thread, as the one-array path does, and a longer one is validated from
        its first batch on while the second is read.
        """
        if self._closed or self._readers is None:
            raise DatasourceError(f"{self.describe()} is closed")
        reads = _CursorReads(self._con, self._readers)
        batches: Any = None

        def pull(cur: Any) -> tuple[int, bytes] | None:
            try:
                batch = batches.read_next_batch()
            except StopIteration:
                return None
            return batch.num_rows, json_array_bytes(batch.column(0))

        def first_ones(cur: Any) -> tuple[tuple[int, bytes] | None, tuple[int, bytes] | None]:
            nonlocal batches
            batches = cur.sql(sql, params=params).to_arrow_reader(JSON_BATCH_ROWS)
            first = pull(cur)
            if first is None or first[0] >= JSON_BATCH_ROWS:
                return first, None  # a full batch: more may follow, read while it is used
            return first, pull(cur)

        try:
            first, second = await reads.wait(reads.submit(first_ones))
            if first is None:
                return
            if first[0] < JSON_BATCH_ROWS and second is None:
                yield first
                return
            reading = reads.submit(pull)
            yield first
            if second is not None:
                yield second
            while (got := await reads.wait(reading)) is not None:
                reading = reads.submit(pull)
                yield got
        except Exception as exc:
            raise DatasourceError(f"list {table} failed: {exc}") from None
        finally:
            reads.close(lambda cur: cur.close())

    async def _query_json_needed(
        self,
        table: str,
        query: Query,
        expr: str,
        sql: str,
        params: list[Any],
        needed: Callable[[list[tuple[str, int]]], list[str]],
    ) -> list[tuple[str, int, str | None]]:
        """Ids and revisions first; JSON only for the rows ``needed`` asks for.

        Both reads run in one transaction on one cursor: one snapshot, as one query.
        """
        ids_sql, _ = self._query_sql(table, "id, revision", query)
        if self._closed or self._readers is None:
            raise DatasourceError(f"{self.describe()} is closed")
        reads = _CursorReads(self._con, self._readers)

        def first(cur: Any) -> list[tuple[str, int]]:
            cur.execute("BEGIN TRANSACTION")
            return cast(list[tuple[str, int]], cur.execute(ids_sql, params).fetchall())

        try:
            pairs = await reads.wait(reads.submit(first))
            want = needed(pairs)  # on the caller's loop: it reads the cache
            texts: dict[str, str] = {}
            if len(want) > len(pairs) // 4:  # mostly cold: the full query is cheaper
                rows = await reads.wait(
                    reads.submit(lambda cur: cur.execute(sql, params).fetchall())
                )
                return cast(list[tuple[str, int, str | None]], rows)
            if want:
                by_id = f"SELECT id, {expr} FROM {quote(table)} WHERE id IN (SELECT unnest($1))"
                got = await reads.wait(
                    reads.submit(lambda cur: cur.execute(by_id, [want]).fetchall())
                )
                texts = dict(got)
            return [(id, revision, texts.get(id)) for id, revision in pairs]
        finally:
            reads.close(_end_read)

    async def count(self, table: str, filters: dict[str, Any]) -> int:
        if table not in self._types:
            return 0
        where, params = self._where(filters)
        sql = f"SELECT count(*) FROM {quote(table)}{where}"
        row = await self._read(lambda cur: cur.execute(sql, params).fetchone())
        return int(row[0])

    async def records(self, table: str) -> list[dict[str, Any]]:
        return await self.query(table, Query())


def _guess(sql_type_name: str) -> ValueType:
    """How to read a column no published field describes (a removed field's data).

    JSON text is parsed; anything else is returned as DuckDB gives it.
    """
    return ValueType("json") if sql_type_name == "JSON" else ValueType("string")


_Report = Callable[[list[tuple[_Pending, Any, BaseException | None]]], None]


def _small(record: dict[str, Any]) -> bool:
    """Whether a record is surely small (~64 KiB): its top-level text, and 64 bytes
    counted per item of its lists and objects (what they nest is not walked)."""
    size = 0
    for value in record.values():
        kind = type(value)
        if kind is str:
            size += len(value)
        elif kind is list or kind is dict:
            size += 64 * len(value)
    return size <= _DIRECT_ROW_BYTES


def _success(item: _Pending) -> Any:
    """What a committed item's future resolves to."""
    if item.ops is not None and not item.atomic:
        return [None] * len(item.ops)
    return None


class _CursorReads:
    """One cursor of a multi-step read, used by one reader thread at a time.

    A read still running when its caller stops (cancelled, or done early) is
    interrupted and keeps the cursor until it ends: DuckDB refuses a second call on a
    busy connection. The cursor is closed by whichever ends last, the read (in its
    thread) or :meth:`close`.
    """

    def __init__(self, con: Any, readers: concurrent.futures.Executor) -> None:
        self.cur = con.cursor()
        self._readers = readers
        self._job: concurrent.futures.Future[Any] | None = None

    def submit(self, fn: Callable[[Any], T]) -> concurrent.futures.Future[T]:
        """Start ``fn(cursor)`` in a reader thread (one at a time)."""
        job = self._readers.submit(fn, self.cur)
        self._job = job
        return job

    async def wait(self, job: concurrent.futures.Future[T]) -> T:
        """The result of ``job``; a cancelled caller leaves it running, not half-done."""
        waiting = asyncio.wrap_future(job)
        # If the caller goes, nobody reads the outcome: fetch it, so it is not logged.
        waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(waiting)

    def close(self, end: Callable[[Any], None]) -> None:
        """``end(cursor)`` once no read runs: now, or when the one in flight finishes."""

        def finish(_: object = None) -> None:
            try:
                end(self.cur)
            except Exception:
                log.warning("closing a read cursor failed", exc_info=True)

        job = self._job
        if job is not None and not job.done():
            # The caller is gone: stop DuckDB's work (interrupt() is safe from any
            # thread), and close the cursor in the reader thread once the read ends.
            with contextlib.suppress(Exception):
                self.cur.interrupt()
            job.add_done_callback(finish)
        else:
            finish()


def _end_read(cur: Any) -> None:
    _rollback(cur)  # a read-only transaction: nothing to commit
    cur.close()


def _parsed(sql: str) -> Any:
    """``sql`` (one statement) parsed once, to execute many times; the text itself where
    this DuckDB cannot execute a parsed statement."""
    import duckdb

    if not _executes_parsed():
        return sql
    (statement,) = duckdb.extract_statements(sql)
    return statement


@functools.cache
def _executes_parsed() -> bool:
    """Whether this DuckDB executes a statement parsed by ``extract_statements``."""
    import duckdb

    try:
        con = duckdb.connect(":memory:")
        try:
            return con.execute(duckdb.extract_statements("SELECT $1")[0], [7]).fetchone() == (7,)
        finally:
            con.close()
    except Exception:
        return False


def _rollback(cur: Any) -> None:
    try:
        cur.execute("ROLLBACK")
    except Exception:
        pass  # no transaction was open


def _storage_error(op: WriteOp | None, exc: Exception) -> Exception:
    import duckdb

    where = f"{op.table}/{op.id}" if op else "write"
    if isinstance(exc, duckdb.ConversionException | duckdb.OutOfRangeException) or (
        # An integer beyond 128 bits fails as it is bound, before any cast.
        isinstance(exc, duckdb.InvalidInputException) and "too large for 128-bit" in str(exc)
    ):
        # The first line says what is wrong; the rest quotes our SQL (users get a 400).
        return ValidationFailed(f"cannot store {where}: {str(exc).strip().splitlines()[0]}")
    if isinstance(exc, duckdb.ConstraintException):
        return Conflict(
            f"cannot store {where}: it already exists ({str(exc).strip().splitlines()[0]})",
            id=op.id if op else None,
        )
    if isinstance(exc, UnstorableValue):
        return ValidationFailed(f"cannot store {where}: {exc}")
    if isinstance(exc, DatasourceError):
        return exc
    return DatasourceError(f"cannot store {where}: {exc}")


def _resolve(outcomes: list[tuple[_Pending, Any, BaseException | None]]) -> None:
    """Hand results to the waiting loops: one thread-safe call per loop per batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:
            pass  # that loop is closed: nobody is waiting any more


def _settle(items: list[tuple[_Pending, Any, BaseException | None]]) -> None:
    for pending, result, exc in items:
        if pending.future.done():
            continue
        if exc is not None:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(result)
