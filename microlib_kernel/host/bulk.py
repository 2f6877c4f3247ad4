"""Validating and dumping many instances at once (``create_many``, large lists).

pydantic-core validates a ``list[Model]`` in one call, without a Python-level loop per
row. The other half of the cost of 100,000 instances is CPython's cyclic garbage
collector: every young collection that a burst of allocations triggers finds nothing
to free (all the new instances are kept), and the full ones walk every object alive.
:func:`paused_gc` switches the collector off for such a burst only, and files what
the burst made with the old objects, so that no young collection walks it afterwards.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..domain.model import Model

#: Below this many rows the collector is left alone (a pause saves nothing measurable).
PAUSE_MIN_ROWS = 1000

_adapters: weakref.WeakKeyDictionary[type[Model], TypeAdapter[list[Any]]] = (
    weakref.WeakKeyDictionary()
)
_pause_lock = threading.Lock()
_pauses = 0  # pauses in progress
_restore = False  # whether the collector was on when the first of them began


@contextlib.contextmanager
def paused_gc(rows: int) -> Iterator[None]:
    """The cyclic collector off while ``rows`` instances are made (if it was on).

    Pauses nest and may overlap across threads: the collector comes back on when the
    last one ends, and only if a pause switched it off; what the burst made is then
    moved to the oldest generation (:func:`_promote_survivors`). Reference counting
    still frees everything that is not in a cycle; cycles made meanwhile wait for the
    next full collection.
    """
    global _pauses, _restore
    if rows < PAUSE_MIN_ROWS:
        yield
        return
    with _pause_lock:
        _pauses += 1
        if _pauses == 1:
            _restore = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _restore:
                _promote_survivors()
                gc.enable()


def _promote_survivors() -> None:
    """Move every tracked object to the oldest generation, without a collection.

    The burst's objects are all young and all alive (they were just made to be kept):
    the first young collection after the pause would walk every one of them to find
    nothing, then the next older one would walk them again. ``freeze`` then
    ``unfreeze`` splices the young lists into the oldest generation in O(1); any cycle
    made meanwhile is still collected, at the next full collection. Skipped when the
    program froze objects itself (``unfreeze`` would thaw them).
    """
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return  # a free-threaded build walks the whole heap to freeze: no gain there
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def list_adapter(cls: type[Model]) -> TypeAdapter[list[Any]]:
    """A cached ``TypeAdapter(list[cls])`` (building one costs about a millisecond)."""
    adapter = _adapters.get(cls)
    if adapter is None:
        adapter = _adapters[cls] = TypeAdapter(list[cls])  # type: ignore[valid-type]
    return adapter


def validate_many(cls: type[Model], values: Sequence[dict[str, Any]]) -> list[Model]:
    """Every row validated as ``cls`` in one call.

    Raises:
        pydantic.ValidationError: some row is invalid (locations start with its index).
    """
    with paused_gc(len(values)):
        instances: list[Model] = list_adapter(cls).validate_python(values)
    return instances


def validate_json_rows(cls: type[Model], rows: Sequence[str]) -> list[Model] | None:
    """Rows given as JSON object texts, validated as ``cls`` in one call.

    Returns ``None`` if any row does not validate: the caller then goes row by row
    (stored data that a newer validator rejects is still returned, never dropped).
    """
    return validate_json_array(cls, "[" + ",".join(rows) + "]", len(rows))


def validate_json_array(cls: type[Model], text: str | bytes, rows: int) -> list[Model] | None:
    """A JSON array of ``rows`` objects validated as ``cls`` in one call (``None``: one
    of them does not validate, as in :func:`validate_json_rows`)."""
    try:
        with paused_gc(rows):
            instances: list[Model] = list_adapter(cls).validate_json(text)
    except (ValidationError, ValueError):
        return None
    return instances


def dump_many(cls: type[Model], instances: Sequence[Model]) -> list[dict[str, Any]]:
    """Every instance as JSON-mode data (what ``model_dump(mode="json")`` gives), at once."""
    with paused_gc(len(instances)):
        records: list[dict[str, Any]] = list_adapter(cls).dump_python(list(instances), mode="json")
    return records


# Instances of a model validated from the same keys have equal sets of "fields set"
# (pydantic keeps one per instance: ~700 bytes for a dozen fields, the largest part of
# a cached instance beyond its values). Cached instances share one set per distinct
# key set. Safe because our models are frozen: pydantic changes the set only in
# ``__setattr__`` (refused on a frozen model) and on the copy ``model_copy`` makes.
_SHARED_MAX = 4096
_shared_fields: dict[frozenset[str], set[str]] = {}


def share_fields_set(instance: Model) -> None:
    """Point ``instance`` at the shared set equal to its own set of fields set."""
    own = instance.__pydantic_fields_set__
    key = frozenset(own)
    shared = _shared_fields.get(key)
    if shared is None:
        if len(_shared_fields) >= _SHARED_MAX:
            return  # many distinct shapes: keep each instance's own set
        shared = _shared_fields[key] = set(key)
    if shared is not own:
        object.__setattr__(instance, "__pydantic_fields_set__", shared)


def share_fields_sets(instances: Sequence[Model]) -> None:
    """:func:`share_fields_set` of each instance; rows of one shape (a bulk create's)
    compare their set with the last one shared instead of building a key each."""
    last: set[str] | None = None
    for instance in instances:
        own = instance.__pydantic_fields_set__
        if last is not None and own == last:
            if own is not last:
                object.__setattr__(instance, "__pydantic_fields_set__", last)
            continue
        share_fields_set(instance)
        shared = instance.__pydantic_fields_set__
        last = shared if _shared_fields.get(frozenset(shared)) is shared else None
