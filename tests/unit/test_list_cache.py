"""The HTTP list cache's rules, with in-memory stand-ins for a repository and a version."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from microlib_kernel.http.list_cache import ListCache


def _repo(exclusive: bool = True, counts: bool = True) -> Any:
    changes = {"notes": 0}
    store = SimpleNamespace(
        exclusive=exclusive, counts_changes=counts, change_count=lambda t: changes[t]
    )
    return SimpleNamespace(store=store, table="notes", generation=0, changes=changes)


def _mv() -> Any:
    return SimpleNamespace(cls=SimpleNamespace(__microlib_endpoint__="notes"))


def test_a_body_is_served_until_the_stamp_moves() -> None:
    cache, repo, mv = ListCache(), _repo(), _mv()
    stamp = cache.stamp(repo)
    assert stamp is not None and cache.get(mv, "__limit=5", stamp) is None
    cache.put(mv, "__limit=5", stamp, b"[]")
    assert cache.get(mv, "__limit=5", stamp) == b"[]"
    assert cache.get(mv, "__limit=6", stamp) is None  # another query
    assert cache.get(_mv(), "__limit=5", stamp) is None  # another version object
    repo.changes["notes"] += 1  # a committed write
    assert cache.get(mv, "__limit=5", cache.stamp(repo)) is None
    repo.generation += 1  # another process changed a row
    assert cache.stamp(repo) != stamp
    assert (cache.hits, cache.misses) == (1, 4)


def test_shared_or_uncounted_stores_are_never_cached() -> None:
    assert ListCache.stamp(_repo(exclusive=False)) is None  # PostgreSQL: other writers
    assert ListCache.stamp(_repo(counts=False)) is None


def test_large_bodies_are_not_kept_and_entries_are_bounded() -> None:
    cache, repo = ListCache(entries=2, max_body=10), _repo()
    stamp = cache.stamp(repo)
    assert stamp is not None
    mv = _mv()
    cache.put(mv, "big", stamp, b"x" * 11)
    assert cache.get(mv, "big", stamp) is None
    for q in ("a", "b", "c"):
        cache.put(mv, q, stamp, b"[]")
    assert cache.get(mv, "a", stamp) is None and cache.get(mv, "c", stamp) == b"[]"
