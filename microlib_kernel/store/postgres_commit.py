"""Group commit for the PostgreSQL store, with revision checks done by the database.

One writer task takes every write waiting in its queue and commits them in one
transaction: per table, one bulk statement per kind of write (``unnest`` of one array
per column), so a hundred concurrent creates cost one round trip and one commit.

Revisions are checked by the statements themselves, so hosts sharing the database
cannot overwrite each other's writes:

* a create (``expect_revision=0``) is ``INSERT ... ON CONFLICT DO NOTHING RETURNING id``;
* a checked update is ``UPDATE ... WHERE id = v.id AND revision = v.expected RETURNING id``;
* a checked delete is ``DELETE ... USING unnest(ids, revisions) ... RETURNING id``;

an id that comes back missing is a :class:`~microlib_kernel.errors.Conflict` for that
write alone; the others commit. Several writes to one id in a group are applied in
order ("rounds": the n-th write of each id goes in round n), so each sees the previous.
A statement error (a value the column refuses) rolls the group back and its writes are
retried one item at a time, so a bad write fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.types import ValueType
from ..errors import Conflict, DatasourceError, DatasourceUnavailable, ValidationFailed
from .base import WriteOp
from .postgres_types import cast_expr, encoder, param_array, quote


@dataclass
class PendingWrites:
    """Writes sharing one future.

    ``atomic``: all commit or none (the future fails); otherwise each succeeds or fails
    alone and the future's result lists one error (or ``None``) per op.
    """

    future: asyncio.Future[Any]
    ops: list[WriteOp]
    atomic: bool = True
    errors: list[BaseException | None] = field(default_factory=list)


@dataclass
class _Step:
    """One bulk statement: a table, a kind of write, the columns, and its ops by index."""

    table: str
    types: dict[str, ValueType]
    mode: str
    cols: tuple[str, ...]
    ops: list[tuple[int, WriteOp]]


class _AtomicConflict(Exception):
    """An all-or-nothing item met a conflict: roll the whole group back."""


class GroupCommitter:
    """Turns groups of :class:`PendingWrites` into transactions.

    Args:
        types: the stores's ``table -> column -> ValueType`` map (read at commit time).
        unavailable: turns a connection-level error into ``DatasourceUnavailable``
            (``None`` if the error is not one).
    """

    def __init__(
        self,
        types: dict[str, dict[str, ValueType]],
        unavailable: Callable[[BaseException], DatasourceUnavailable | None],
    ) -> None:
        self._types = types
        self._unavailable = unavailable
        self._statements: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def forget_statements(self) -> None:
        """Column types changed: build statements again."""
        self._statements.clear()

    async def commit(self, conn: Any, items: list[PendingWrites]) -> set[str]:
        """Commit ``items`` (each failing alone if needed); returns the tables written."""
        try:
            return await self._commit_group(conn, items)
        except _AtomicConflict:
            pass
        except Exception as exc:
            down = self._unavailable(exc)
            if down is not None:
                for item in items:
                    _fail(item, down)
                return set()
            if len(items) == 1 and items[0].atomic:
                _fail(items[0], storage_error(items[0].ops, exc))
                return set()
        # Isolate: every item alone, every op of a non-atomic item alone.
        tables: set[str] = set()
        for item in items:
            units = [[op] for op in item.ops] if not item.atomic else [item.ops]
            errors: list[BaseException | None] = []
            for ops in units:
                one = PendingWrites(item.future, ops, atomic=True)
                try:
                    tables |= await self._commit_group(conn, [one])
                    errors.extend(one.errors or [None] * len(ops))
                except _AtomicConflict:
                    errors.extend(one.errors)
                except Exception as exc:
                    down = self._unavailable(exc)
                    errors.extend([down or storage_error(ops, exc)] * len(ops))
            item.errors = errors
        return tables

    async def _commit_group(self, conn: Any, items: list[PendingWrites]) -> set[str]:
        ops: list[tuple[int, WriteOp]] = []
        owner: list[PendingWrites] = []
        for item in items:
            for op in item.ops:
                ops.append((len(owner), op))
                owner.append(item)
        conflicts: dict[int, Conflict] = {}
        plan = [self._plan(round_) for round_ in _rounds(ops)]
        # One statement is atomic on its own: skip BEGIN and COMMIT (two round trips,
        # a third of a lone create's time), unless an all-or-nothing item of several
        # writes needs the transaction to undo its other writes on a conflict.
        alone = sum(len(steps) for steps in plan) == 1 and all(
            len(item.ops) == 1 or not item.atomic for item in items
        )
        async with contextlib.nullcontext() if alone else conn.transaction():
            for steps in plan:
                for step in steps:
                    conflicts |= await self._execute(conn, step)
            # A lone write's conflict is its own answer; an all-or-nothing item of several
            # writes must undo the others (the whole group is then retried item by item).
            atomic_failed = {
                id(owner[i]) for i in conflicts if owner[i].atomic and len(owner[i].ops) > 1
            }
            if atomic_failed:
                for item in items:
                    if id(item) in atomic_failed:
                        first = next(c for i, c in conflicts.items() if owner[i] is item)
                        item.errors = [first] * len(item.ops)
                raise _AtomicConflict
        index = 0
        for item in items:
            item.errors = [conflicts.get(index + k) for k in range(len(item.ops))]
            index += len(item.ops)
        return {op.table for _, op in ops}

    def _plan(self, ops: list[tuple[int, WriteOp]]) -> list[_Step]:
        """The bulk statements of one round: per table, one per kind of write and columns."""
        steps: dict[tuple[str, str, tuple[str, ...]], _Step] = {}
        for index, op in ops:
            types = self._types.get(op.table)
            if types is None:
                raise DatasourceError(
                    f"table {op.table!r} is not registered (publish its model first)"
                )
            expect = op.expect_revision if "revision" in types else None
            if op.kind == "delete":
                mode = "delete" if expect is None else "delete_checked"
                cols: tuple[str, ...] = ()
            else:
                assert op.record is not None
                mode = "upsert" if expect is None else "insert" if expect == 0 else "update"
                cols = tuple(c for c in op.record if c in types)
            key = (op.table, mode, cols)
            if key not in steps:
                steps[key] = _Step(op.table, types, mode, cols, [])
            steps[key].ops.append((index, op))
        return list(steps.values())

    async def _execute(self, conn: Any, step: _Step) -> dict[int, Conflict]:
        """Run one step; the conflicts of the writes it checks, by op index."""
        found = await self._run(
            conn, step.table, step.types, step.mode, step.cols, [op for _, op in step.ops]
        )
        if found is None:
            return {}
        conflicts: dict[int, Conflict] = {}
        for index, op in step.ops:
            if op.id in found or (step.mode == "delete_checked" and op.expect_revision == 0):
                continue
            conflicts[index] = Conflict(
                f"{step.table}/{op.id} was changed or removed by another writer "
                f"(expected revision {op.expect_revision}); read it again and retry",
                id=op.id,
            )
        return conflicts

    async def _run(
        self,
        conn: Any,
        table: str,
        types: dict[str, ValueType],
        mode: str,
        cols: tuple[str, ...],
        ops: Sequence[WriteOp],
    ) -> set[str] | None:
        """Run one bulk statement; the ids it touched when the mode checks revisions."""
        sql = self._statement(table, types, mode, cols)
        if mode in ("delete", "delete_checked"):
            params: list[Any] = [[op.id for op in ops]]
            if mode == "delete_checked":
                params.append([op.expect_revision for op in ops])
        else:
            params = []
            for c in cols:
                enc = encoder(types[c])
                params.append([enc(op.record.get(c)) for op in ops if op.record is not None])
            if mode == "update":
                params.append([op.expect_revision for op in ops])
        cur = await conn.execute(sql, params)
        if mode in ("upsert", "delete"):
            return None
        return {row[0] for row in await cur.fetchall()}

    def _statement(
        self, table: str, types: dict[str, ValueType], mode: str, cols: tuple[str, ...]
    ) -> str:
        key = (table, mode, cols)
        sql = self._statements.get(key)
        if sql is not None:
            return sql
        t = quote(table)
        if mode == "delete":
            sql = f"DELETE FROM {t} WHERE id = ANY(%s::text[])"
        elif mode == "delete_checked":
            sql = (
                f"DELETE FROM {t} AS t USING unnest(%s::text[], %s::bigint[]) AS v(id, expected) "
                "WHERE t.id = v.id AND t.revision = v.expected RETURNING t.id"
            )
        else:
            aliases = [f"c{i}" for i in range(len(cols))]
            arrays = ", ".join(f"%s::{param_array(types[c])}[]" for c in cols)
            exprs = ", ".join(cast_expr(a, types[c]) for a, c in zip(aliases, cols, strict=True))
            names = ", ".join(quote(c) for c in cols)
            if mode == "update":
                source = (
                    f"SELECT {exprs}, expected FROM unnest({arrays}, %s::bigint[]) "
                    f"AS u({', '.join(aliases)}, expected)"
                )
                sets = ", ".join(f"{quote(c)} = v.{quote(c)}" for c in cols if c != "id")
                sql = (
                    f"UPDATE {t} AS t SET {sets} FROM ({source}) AS v({names}, expected) "
                    "WHERE t.id = v.id AND t.revision = v.expected RETURNING t.id"
                )
            else:
                sql = (
                    f"INSERT INTO {t} ({names}) SELECT {exprs} "
                    f"FROM unnest({arrays}) AS u({', '.join(aliases)})"
                )
                if mode == "insert":
                    sql += " ON CONFLICT (id) DO NOTHING RETURNING id"
                else:
                    updates = ", ".join(
                        f"{quote(c)} = EXCLUDED.{quote(c)}" for c in cols if c != "id"
                    )
                    sql += (
                        f" ON CONFLICT (id) DO UPDATE SET {updates}"
                        if updates
                        else (" ON CONFLICT (id) DO NOTHING")
                    )
        self._statements[key] = sql
        return sql


def _rounds(ops: list[tuple[int, WriteOp]]) -> list[list[tuple[int, WriteOp]]]:
    """Split ops so no id appears twice in a round; the n-th write of an id is in round n."""
    seen: dict[tuple[str, str], int] = {}
    rounds: list[list[tuple[int, WriteOp]]] = []
    for index, op in ops:
        key = (op.table, op.id)
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append((index, op))
    return rounds


def _fail(item: PendingWrites, exc: BaseException) -> None:
    item.errors = [exc] * len(item.ops)


def storage_error(ops: Sequence[WriteOp], exc: BaseException) -> Exception:
    """A statement error as the error a user gets (a refused value is a 400)."""
    import psycopg

    op = ops[0] if len(ops) == 1 else None
    where = f"{op.table}/{op.id}" if op else "write"
    if isinstance(exc, DatasourceError | Conflict):
        return exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.DataError | psycopg.errors.IntegrityError):
        return ValidationFailed(f"cannot store {where}: {first}")
    return DatasourceError(f"cannot store {where}: {first}")


def settle(item: PendingWrites) -> None:
    """Hand an item's outcome to its waiter."""
    if item.future.done():
        return
    errors = item.errors or [None] * len(item.ops)
    if item.atomic:
        error = next((e for e in errors if e is not None), None)
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(None)
    else:
        item.future.set_result(errors)
