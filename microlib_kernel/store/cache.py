"""A bounded LRU cache of instances, in front of every datasource."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any


class InstanceCache:
    """Least-recently-used cache keyed by ``(table, id)``, with one order across tables.

    It holds immutable model instances, so a cached value can be handed out without
    copying. It is only touched from the host's loop (no lock needed).

    An entry is keyed by its id alone, the instance's own string, when its table is its
    model's table (the class's endpoint, which names the table): a ``(table, id)``
    tuple per entry was 72 bytes, the largest part of an entry beyond the instance.
    An id that another table's entry already holds, or a value cached under another
    table than its class's, is keyed by ``(table, id)``.

    Args:
        size: most entries kept; ``0`` disables caching.
    """

    def __init__(self, size: int) -> None:
        self.size = max(0, int(size))
        self._data: OrderedDict[str | tuple[str, str], Any] = OrderedDict()
        self._pairs = 0  # entries keyed by (table, id)
        # Revision floors from other hosts' writes (cache coherence): a copy older than
        # its floor was read before that write and must not be cached again.
        self._floors: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._suspended = False
        self.hits = 0
        self.misses = 0

    def _find(self, table: str, id: str) -> tuple[str | tuple[str, str], Any] | None:
        """The key ``(table, id)`` is cached under and its value, or ``None``."""
        data = self._data
        value = data.get(id)
        if value is not None and _table_of(value) == table:
            return id, value
        if self._pairs and (value := data.get((table, id))) is not None:
            return (table, id), value
        return None

    def get(self, table: str, id: str) -> Any | None:
        found = None if self._suspended else self._find(table, id)
        if found is None:
            self.misses += 1
            return None
        self._data.move_to_end(found[0])
        self.hits += 1
        return found[1]

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
            # :meth:`_find` written out: a cached list of 100,000 rows spent ~30% more
            # here calling it.
            value = get(id)
            if value is not None and _table_of(value) == table:
                touch(id)
            elif self._pairs and (value := get((table, id))) is not None:
                touch((table, id))
            else:
                value = None
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
        get, touch = data.get, data.move_to_end
        model: type | None = None  # a class seen keyed by id alone in ``table``
        for id, value in entries:
            if floors:
                floor = floors.get((table, id))
                if floor is not None and getattr(value, "revision", 0) < floor:
                    continue
            own = getattr(value, "id", None)
            if own == id:
                id = own  # key by the instance's own string: no second copy kept
            held = get(id)
            if type(value) is model and not self._pairs:
                # Another instance of the last class put here (a bulk create's): no
                # pair keys exist, so its id alone is its key.
                if held is None:
                    data[id] = value  # a new key is the newest already
                    continue
                if type(held) is model:
                    data[id] = value
                    touch(id)
                    continue
            if _table_of(value) == table and (held is None or _table_of(held) == table):
                key: str | tuple[str, str] = id
                if self._pairs and data.pop((table, id), None) is not None:
                    self._pairs -= 1  # it was keyed by the pair while its id was taken
            else:
                if held is not None and _table_of(held) == table:
                    del data[id]  # this (table, id)'s copy under its id alone: replaced
                key = (table, id)
                if key not in data:
                    self._pairs += 1
            data[key] = value
            touch(key)
            if key is id:
                model = type(value)
        for _ in range(len(data) - self.size):
            self._forget(data.popitem(last=False)[0])

    def _forget(self, key: str | tuple[str, str]) -> None:
        """Bookkeeping for an entry that left under ``key``."""
        if type(key) is tuple:
            self._pairs -= 1

    def evict(self, table: str, id: str) -> None:
        found = self._find(table, id)
        if found is not None:
            del self._data[found[0]]
            self._forget(found[0])

    def invalidate(self, table: str, id: str, revision: int | None) -> None:
        """Another process wrote ``id`` at ``revision`` (``None``: deleted it).

        The cached copy goes, and no copy older than ``revision`` is cached again (a read
        that started before that write may finish after this message arrived).
        """
        self.evict(table, id)
        key = (table, id)
        floor = float("inf") if revision is None else revision
        # Messages can arrive late or twice (replays): a floor never goes down.
        self._floors[key] = max(self._floors.get(key, floor), floor)
        self._floors.move_to_end(key)
        while len(self._floors) > max(self.size, 1000):
            self._floors.popitem(last=False)

    def suspend(self) -> None:
        """Stop answering from the cache (the bus is down: writes elsewhere are unheard)."""
        self._suspended = True
        self.clear()

    def resume(self) -> None:
        """Cache again, starting empty (the floors stay: reads still in flight may be old)."""
        self.clear()
        self._suspended = False

    @property
    def suspended(self) -> bool:
        return self._suspended

    def clear(self, table: str | None = None) -> None:
        """Drop everything, or one table's entries."""
        if table is None:
            self._data.clear()
            self._pairs = 0
            return
        gone = [
            k
            for k, v in self._data.items()
            if (k[0] if type(k) is tuple else _table_of(v)) == table
        ]
        for key in gone:
            del self._data[key]
            self._forget(key)

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict[str, int]:
        return {
            "size": len(self._data),
            "capacity": self.size,
            "hits": self.hits,
            "misses": self.misses,
        }


def _table_of(value: Any) -> str | None:
    """The table an instance keyed by its id alone is in: its model's endpoint."""
    return getattr(type(value), "__microlib_endpoint__", None)
