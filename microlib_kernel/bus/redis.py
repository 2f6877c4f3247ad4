"""``redis://host:6379/0``: Redis streams (redis-py's asyncio client).

One stream per cluster, ``microlib:<cluster>:bus``, capped near ``maxlen`` entries.
Each host reads with ``XREAD BLOCK`` from the last entry id it saw, so after a lost
connection it resumes where it stopped (at least once, as long as the entries are
still in the stream). Every entry holds one encoded :class:`BusMessage`.
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

    async def _connect(self) -> None:
        from redis.asyncio import Redis

        if self._redis is None:
            self._redis = Redis.from_url(
                self.url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=10
            )
        await self._redis.ping()
        if self._last_id == "$":
            # Start after the newest entry now, so a new host does not replay history.
            newest = await self._redis.xrevrange(self.key, count=1)
            self._last_id = newest[0][0].decode() if newest else "0-0"
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        self._set_connected(True)

    async def _read_loop(self) -> None:
        while not self._closed:
            try:
                batches = await self._redis.xread({self.key: self._last_id}, block=1000, count=500)
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
            for _key, entries in batches or ():
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
