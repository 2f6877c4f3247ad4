"""``redis://host:6379/0``: Redis streams (redis-py's asyncio client).

One stream per cluster, ``microlib:<cluster>:bus``, capped near ``maxlen`` entries.
Each host reads with ``XREAD BLOCK`` from the last entry id it saw, so after a lost
connection it resumes where it stopped (at least once, as long as the entries are
still in the stream). Every entry holds one encoded :class:`BusMessage`.

A host that falls further behind than ``maxlen`` entries would lose the oldest unread
ones silently: ``XREAD`` just starts at the oldest entry left. So the reader counts:
it knows the *ordinal* of the last entry it read (the stream's ``entries-added`` when
it joined, plus one per entry read), and after every batch ``XINFO STREAM`` says how
many entries were trimmed so far (``entries-added - length``; trimming removes the
oldest first, and nothing here deletes entries otherwise). More trimmed entries than
the ordinal we had read up to, beyond those of the batch itself (trimmed just after we
read them), means entries we never read are gone: the bus reports a gap
(:meth:`Bus.on_gap`). This needs Redis 7 (``entries-added``); on older servers no gap
is detected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .base import Bus, BusMessage, redact

log = logging.getLogger("microlib_kernel.bus")


class RedisStreamsBus(Bus):
    """The bus on a Redis stream."""

    scheme = "redis"

    def __init__(self, url: str, *, cluster: str = "default", maxlen: int = 100_000) -> None:
        super().__init__(url, cluster=cluster)
        self.key = f"microlib:{cluster}:bus"
        self.maxlen = maxlen
        self._redis: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._last_id = "$"
        #: How many entries the stream had received up to ``_last_id`` (None: unknown).
        self._ordinal: int | None = None

    async def _connect(self) -> None:
        from redis.asyncio import Redis

        if self._redis is None:
            self._redis = Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
            )
        await self._redis.ping()
        if self._last_id == "$":
            # Start after the newest entry ever added, so a new host does not replay
            # history (nor mistakes entries trimmed before it joined for a gap).
            info = await self._stream_info()
            self._last_id = info.get("last-generated-id", "0-0")
            self._ordinal = info.get("entries-added") if info else 0
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        self._set_connected(True)

    async def _stream_info(self) -> dict[str, Any]:
        """``XINFO STREAM`` with ids as ``str`` (empty for a stream not created yet)."""
        from redis.exceptions import ResponseError

        try:
            info = await self._redis.xinfo_stream(self.key)
        except ResponseError:  # no such key: nothing was ever added (or it was deleted)
            return {}
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in info.items()}

    async def _missed(self, entries: list[tuple[bytes, Any]]) -> int:
        """How many entries after ``_last_id`` were trimmed before ``entries`` were read.

        ``entries`` is the batch just read after ``_last_id``. Entries of the batch may
        have been trimmed since (they are older than the first entry left): those were
        read, not missed. Entries after a batch that ``COUNT`` cut short may be gone
        too: they are counted now (the next batch cannot contain them), so ``_ordinal``,
        moved forward by the result, runs ahead of the batch until the next one.
        """
        if self._ordinal is None:
            return 0
        info = await self._stream_info()
        added, length = info.get("entries-added"), info.get("length")
        if not isinstance(added, int) or not isinstance(length, int):
            return 0  # Redis < 7, or the stream was deleted meanwhile
        if added < self._ordinal:
            # The stream was deleted and created again (whatever it held is gone). Its
            # ids are newer than ours, so the batch starts at its first entry left.
            self._ordinal = added - length
            return 1
        first = info.get("first-entry")
        first_id = _entry_id(first[0].decode()) if first else _NEWEST
        read_then_trimmed = sum(1 for i, _ in entries if _entry_id(i.decode()) < first_id)
        missed = max(0, added - length - self._ordinal - read_then_trimmed)
        self._ordinal += missed
        return missed

    async def _read_loop(self) -> None:
        while not self._closed:
            try:
                batches = await self._redis.xread({self.key: self._last_id}, block=1000, count=500)
                entries = [entry for _key, got in batches or () for entry in got]
                # Trimming needs new entries, and XREAD returns them: checking after a
                # batch that was not empty sees every trim that passed us.
                missed = await self._missed(entries) if entries else 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # down: report, wait, resume from _last_id
                if not self._closed:
                    log.debug("redis bus read failed: %s", exc)
                    self._set_connected(False)
                    await asyncio.sleep(0.5)
                    await self._reconnect()
                continue
            self._set_connected(True)
            if missed:
                self._gap(f"stream {self.key} was trimmed past entry {self._last_id}")
            if self._ordinal is not None:
                self._ordinal += len(entries)
            for entry_id, fields in entries:
                self._last_id = entry_id.decode()
                raw = fields.get(b"m")
                if raw is not None:
                    await self._deliver(raw)

    async def _reconnect(self) -> None:
        try:
            await self._redis.ping()
        except Exception as exc:
            log.debug("redis bus %s still down: %s", redact(self.url), exc)
            return
        self._set_connected(True)

    async def _send(self, message: BusMessage) -> None:
        await self._redis.xadd(
            self.key, {"m": message.encode()}, maxlen=self.maxlen, approximate=True
        )

    async def _alive(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def _disconnect(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


#: Sorts after every entry id (an empty stream has no first entry).
_NEWEST = (1 << 64, 0)


def _entry_id(text: str) -> tuple[int, int]:
    """A stream entry id ``"<ms>-<seq>"`` as a tuple that sorts like Redis does."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
