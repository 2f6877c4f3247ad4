"""Validating many instances at once (``create_many``, large lists).

pydantic-core validates a ``list[Model]`` in one call, without a Python-level loop per
row. The other half of the cost of 100,000 instances is CPython's cyclic garbage
collector, which ``paused_gc`` (``gc_pause.py``) keeps off during such a burst.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..domain.model import Model
from ..gc_pause import paused_gc

_adapters: weakref.WeakKeyDictionary[type[Model], TypeAdapter[list[Any]]] = (
    weakref.WeakKeyDictionary()
)


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
