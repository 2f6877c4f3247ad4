"""The lease store port (see :mod:`microlib_kernel.host.leases` for what leases are for)."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence


class LeaseStore(abc.ABC):
    """Where leases live. Every method is atomic on its own."""

    @abc.abstractmethod
    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        """Take ``key`` for ``owner`` (free, expired or already ours); whether it worked."""

    @abc.abstractmethod
    async def renew(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        """Extend ``owner``'s leases on ``keys``; returns those still held."""

    @abc.abstractmethod
    async def release(self, key: str, owner: str) -> None:
        """Give ``key`` up (only if ``owner`` holds it)."""

    @abc.abstractmethod
    async def expired(self, limit: int = 100) -> list[str]:
        """Keys whose owner stopped renewing (a dead host's flows)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


class LocalLeases(LeaseStore):
    """Leases in this process (one host owns its datasource; also for unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._leases: dict[str, tuple[str, float]] = {}

    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        held = self._leases.get(key)
        now = self.clock()
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._leases[key] = (owner, now + ttl)
        return True

    async def renew(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        out = set()
        until = self.clock() + ttl
        for key in keys:
            held = self._leases.get(key)
            if held is not None and held[0] == owner:
                self._leases[key] = (owner, until)
                out.add(key)
        return out

    async def release(self, key: str, owner: str) -> None:
        held = self._leases.get(key)
        if held is not None and held[0] == owner:
            del self._leases[key]

    async def expired(self, limit: int = 100) -> list[str]:
        now = self.clock()
        return [k for k, (_, until) in self._leases.items() if until <= now][:limit]
