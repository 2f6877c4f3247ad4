"""A bounded LRU cache of instances, in front of every datasource."""

from __future__ import annotations

from collections import OrderedDict
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
        self.hits = 0
        self.misses = 0

    def get(self, table: str, id: str) -> Any | None:
        key = (table, id)
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, table: str, id: str, value: Any) -> None:
        if not self.size:
            return
        key = (table, id)
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def evict(self, table: str, id: str) -> None:
        self._data.pop((table, id), None)

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
