"""Rendered list responses, served again until their table changes.

A list is a query plus validation plus JSON for every row, each time: ~1 ms of DuckDB
for 20 rows, where reading one instance by id is a cache hit. Lists asked again and
again (a UI polling ``?__limit=20``) get the same bytes until a write commits.

An entry is valid while its *stamp* is unchanged: the store's change counter of the
table (bumped by every committed write, before the write is acknowledged) and the
repository's generation (bumped when another process tells us it changed a row). The
stamp is read before the query runs, so a write that commits during the query makes
the entry stale at once. Only stores that are the sole writer of their tables and
count their changes qualify (``exclusive`` and ``counts_changes``); with a shared
store (PostgreSQL) every list goes to the store.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..host.registry import ModelVersion
    from ..host.repository import Repository

Stamp = tuple[int, int, int]


class ListCache:
    """A bounded LRU of list bodies keyed by (endpoint, serving version, query string).

    Args:
        entries: most bodies kept.
        max_body: larger bodies are not kept (a list of everything is not worth it).
    """

    def __init__(self, entries: int = 256, max_body: int = 256 * 1024) -> None:
        self.entries = entries
        self.max_body = max_body
        self._data: OrderedDict[tuple[str, int, str], tuple[Any, Stamp, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def stamp(repo: Repository) -> Stamp | None:
        """The table's current stamp, or ``None`` if its store cannot be cached."""
        store = repo.store
        if not (store.exclusive and store.counts_changes):
            return None
        return (id(store), store.change_count(repo.table), repo.generation)

    def get(self, mv: ModelVersion, query: str, stamp: Stamp) -> bytes | None:
        """The body rendered for this version and query at this stamp, if kept."""
        key = (mv.cls.__microlib_endpoint__, id(mv), query)
        entry = self._data.get(key)
        # ``entry[0] is mv``: an id() can be reused once a version is gone.
        if entry is None or entry[0] is not mv or entry[1] != stamp:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return entry[2]

    def put(self, mv: ModelVersion, query: str, stamp: Stamp, body: bytes) -> None:
        """Keep ``body`` (rendered from a query that started at ``stamp``)."""
        if len(body) > self.max_body:
            return
        key = (mv.cls.__microlib_endpoint__, id(mv), query)
        self._data[key] = (mv, stamp, body)
        self._data.move_to_end(key)
        while len(self._data) > self.entries:
            self._data.popitem(last=False)
