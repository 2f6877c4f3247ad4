"""``file:///dir``: one JSON document per instance, ``dir/<table>/<id>.json``.

Writes are atomic (write a temporary file, fsync, rename, fsync the folder) so a killed
process leaves either the old or the new document, never half of one. Every record is
also kept in memory (this is the memory store, persisted), so reads never touch disk.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain.ids import is_valid_id
from ..errors import DatasourceError
from .base import SchemaChange, TableSchema, WriteOp
from .memory import MemoryStore
from .registry import url_path

if TYPE_CHECKING:
    from ..config import Settings


class FileStore(MemoryStore):
    """JSON documents in a folder tree, cached whole in memory."""

    scheme = "file"
    capabilities = frozenset({"checks_revisions", "durable"})

    def __init__(self, url: str, root: Path) -> None:
        super().__init__(url)
        self.root = root
        self._pending: list[tuple[list[WriteOp], asyncio.Future[None]]] = []
        self._flusher: asyncio.Future[None] | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> FileStore:
        path = url_path(url, settings)
        if path is None:
            raise DatasourceError(f"file datasource {url!r} needs a folder: file:///relative/dir")
        return cls(url, path)

    def describe(self) -> str:
        return f"file: {self.root}"

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    async def open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasourceError(
                f"cannot create the file datasource folder {self.root}: {exc}"
            ) from None
        await asyncio.to_thread(self._load_all)

    def _load_all(self) -> None:
        for table_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            rows = self._tables.setdefault(table_dir.name, {})
            for doc in table_dir.glob("*.json"):
                try:
                    record = json.loads(doc.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    # A document that cannot be read is left on disk for the operator,
                    # never deleted or overwritten silently.
                    continue
                if isinstance(record, dict) and is_valid_id(record.get("id")):
                    rows[record["id"]] = record

    def _doc(self, table: str, id: str) -> Path:
        if not is_valid_id(id) or not is_valid_id(table):
            raise DatasourceError(f"refusing unsafe file name {table}/{id}")
        path = (self.root / table / f"{id}.json").resolve()
        if path.parent.parent != self.root.resolve():
            raise DatasourceError(f"refusing a path outside {self.root}: {table}/{id}")
        return path

    async def ensure_table(self, schema: TableSchema) -> SchemaChange:
        (self.root / schema.name).mkdir(parents=True, exist_ok=True)
        change = await super().ensure_table(schema)
        if change.added:
            # Older documents gain the new column's default on disk too.
            ops = [
                WriteOp("upsert", schema.name, rid, dict(rec))
                for rid, rec in self._tables.get(schema.name, {}).items()
            ]
            await asyncio.to_thread(self._persist, ops)
        return change

    def _persist(self, ops: Sequence[WriteOp]) -> None:
        dirs: set[Path] = set()
        for op in ops:
            path = self._doc(op.table, op.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            if op.kind == "delete":
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            else:
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(op.record, fh, default=str)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            dirs.add(path.parent)
        for d in dirs:
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def write(self, op: WriteOp) -> None:
        await self.write_many([op])

    async def write_many(self, ops: Sequence[WriteOp]) -> None:
        # Group commit: writes arriving while a flush runs are persisted by the next
        # one, in order, with one fsync per folder per group.
        for op in ops:
            self._check(op)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(ops), fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await fut

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            final: dict[tuple[str, str], WriteOp] = {}
            for ops, _ in batch:
                for op in ops:
                    old = self._tables.get(op.table, {}).get(op.id)
                    if op.kind == "upsert" and old and op.record is not None:
                        # Upsert merges (a removed field's data stays), on disk too.
                        op = WriteOp(op.kind, op.table, op.id, {**old, **op.record})
                    final[(op.table, op.id)] = op
            try:
                await asyncio.to_thread(self._persist, list(final.values()))
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(DatasourceError(f"cannot write to {self.root}: {exc}"))
                continue
            for ops, fut in batch:
                for op in ops:
                    self._apply(op)
                if not fut.done():
                    fut.set_result(None)
