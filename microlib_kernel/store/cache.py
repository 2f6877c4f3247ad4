"""A bounded LRU cache of instances, in front of every datasource."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any


class InstanceCache:
    """Least-recently-used cache keyed by ``(table, id)``.

    It holds immutable model instances, so a cached value can be handed out without
    copying. It is only touched from the host's loop (no lock needed).

    Args:
        size: most entries kept; ``0`` disables caching.
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._data: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # Revision floors from other hosts' writes (cache coherence): a copy older than
        # its floor was read before that write and must not be cached again.
        self._floors: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._suspended = False
        self.hits = 0
        self.misses = 0

    def get(self, table: str, id: str) -> Any | None:
        if self._suspended:
            self.misses += 1
            return None
        key = (table, id)
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def get_many(self, table: str, ids: Iterable[str]) -> list[Any | None]:
        """:meth:`get` of each id, in order (a list checks every row it returns)."""
        if self._suspended:
            out: list[Any | None] = [None for _ in ids]
            self.misses += len(out)
            return out
        data = self._data
        get, touch = data.get, data.move_to_end
        out = []
        for id in ids:
            key = (table, id)
            value = get(key)
            if value is not None:
                touch(key)
            out.append(value)
        found = len(out) - out.count(None)
        self.hits += found
        self.misses += len(out) - found
        return out

    def put(self, table: str, id: str, value: Any) -> None:
        self.put_many(table, ((id, value),))

    def put_many(self, table: str, entries: Iterable[tuple[str, Any]]) -> None:
        """:meth:`put` of each ``(id, value)`` in order (a bulk write's new instances).

        The oldest entries beyond ``size`` go once at the end: the same entries stay as
        after one ``put`` each.
        """
        if not self.size or self._suspended:
            return
        data, floors = self._data, self._floors
        for id, value in entries:
            key = (table, id)
            if floors:
                floor = floors.get(key)
                if floor is not None and getattr(value, "revision", 0) < floor:
                    continue
            data[key] = value
            data.move_to_end(key)
        for _ in range(len(data) - self.size):
            data.popitem(last=False)

    def evict(self, table: str, id: str) -> None:
        self._data.pop((table, id), None)

    def invalidate(self, table: str, id: str, revision: int | None) -> None:
        """Another process wrote ``id`` at ``revision`` (``None``: deleted it).

        The cached copy goes, and no copy older than ``revision`` is cached again (a read
        that started before that write may finish after this message arrived).
        """
        key = (table, id)
        self._data.pop(key, None)
        floor = float("inf") if revision is None else revision
        # Messages can arrive late or twice (replays): a floor never goes down.
        self._floors[key] = max(self._floors.get(key, floor), floor)
        self._floors.move_to_end(key)
        while len(self._floors) > max(self.size, 1000):
            self._floors.popitem(last=False)

    def suspend(self) -> None:
        """Stop answering from the cache (the bus is down: writes elsewhere are unheard)."""
        self._suspended = True
        self._data.clear()

    def resume(self) -> None:
        """Cache again, starting empty (the floors stay: reads still in flight may be old)."""
        self._data.clear()
        self._suspended = False

    @property
    def suspended(self) -> bool:
        return self._suspended

    def clear(self, table: str | None = None) -> None:
        """Drop everything, or one table's entries."""
        if table is None:
            self._data.clear()
        else:
            for key in [k for k in self._data if k[0] == table]:
                del self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict[str, int]:
        return {
            "size": len(self._data),
            "capacity": self.size,
            "hits": self.hits,
            "misses": self.misses,
        }
