"""``memory://NAME``: a bus inside one process (several hosts in one test or notebook).

Hosts that open the same name share it; messages are delivered on each receiver's own
loop. It can be "taken down" (:meth:`MemoryHub.set_down`) to exercise the down path
without a network.
"""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

from .base import Bus, BusMessage, BusUnavailable


class MemoryHub:
    """The shared medium of one ``memory://NAME`` bus."""

    _hubs: ClassVar[dict[str, MemoryHub]] = {}
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.members: list[MemoryBus] = []
        self.down = False

    @classmethod
    def named(cls, name: str) -> MemoryHub:
        with cls._lock:
            return cls._hubs.setdefault(name, cls())

    def set_down(self, down: bool) -> None:
        """Simulate an outage (``True``) or its end (``False``) for every member."""
        self.down = down
        for member in list(self.members):
            if member._loop is not None:
                member._loop.call_soon_threadsafe(member._set_connected, not down)


class MemoryBus(Bus):
    """A member of a :class:`MemoryHub`."""

    scheme = "memory"

    def __init__(self, url: str, *, cluster: str = "default") -> None:
        super().__init__(url, cluster=cluster)
        self.hub = MemoryHub.named(f"{url.split('://', 1)[1] or 'default'}/{cluster}")

    async def _connect(self) -> None:
        self.hub.members.append(self)
        self._set_connected(not self.hub.down)

    async def _send(self, message: BusMessage) -> None:
        if self.hub.down:
            raise BusUnavailable("the memory bus is down")
        raw = message.encode()
        for member in list(self.hub.members):
            if member._loop is not None:
                asyncio.run_coroutine_threadsafe(member._deliver(raw), member._loop)

    async def _disconnect(self) -> None:
        if self in self.hub.members:
            self.hub.members.remove(self)
