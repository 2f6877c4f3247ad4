"""Value types as DuckDB column types, and the encoders/decoders of bulk writes.

Bulk writes pass one list per column as a parameter and ``unnest`` them (see
``shared/ENVIRONMENT.md``: this is ~100x faster than a statement per row). Scalars
travel natively; nested values travel as JSON text and are cast by DuckDB into their
``STRUCT``/``LIST``/``JSON`` column type, so nested data is real nested data in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic_core import to_json

from ..domain.types import ValueType
from .sql_text import quote

_SCALAR_SQL = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "time": "TIME",
    "decimal": "DECIMAL(38,10)",
    "uuid": "UUID",
    "json": "JSON",
}
# Scalars whose Python/JSON value DuckDB binds directly as a list parameter of this type.
_NATIVE_PARAM = {"string": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "boolean": "BOOLEAN"}


def sql_type(t: ValueType) -> str:
    """The DuckDB type of a value type."""
    if t.secret:
        return "VARCHAR"
    if t.kind == "list":
        assert t.item is not None
        return sql_type(t.item) + "[]"
    if t.kind == "struct":
        inner = ", ".join(f"{quote(n)} {sql_type(ft)}" for n, ft in t.fields)
        return f"STRUCT({inner})"
    return _SCALAR_SQL[t.kind]


def param_expr(index: int, t: ValueType) -> str:
    """The SELECT expression that unnests parameter ``$index`` into a column of type ``t``."""
    if not t.secret and t.kind in _NATIVE_PARAM:
        return f"unnest(${index}::{_NATIVE_PARAM[t.kind]}[])"
    if t.secret or t.kind in ("timestamp", "date", "time", "decimal", "uuid"):
        return f"CAST(unnest(${index}::VARCHAR[]) AS {sql_type(t)})"
    if t.kind == "json":
        return f"CAST(unnest(${index}::VARCHAR[]) AS JSON)"
    return f"CAST(CAST(unnest(${index}::VARCHAR[]) AS JSON) AS {sql_type(t)})"


# Kinds whose text a one-row statement binds as it is: DuckDB casts a bound value to the
# type of the column it goes into, exactly as the CAST would, for fewer instructions.
_CAST_ON_BIND = frozenset({"timestamp", "date", "time", "decimal", "uuid"})
# Items of a list that a one-row statement binds as a Python list (port_flow's strings).
# Not floats: a non-finite float would be stored as itself, where JSON text says null.
# Not integers: one beyond 128 bits fails to bind with an error that says nothing of
# the column, where the CAST of its text is refused as out of range (a 400).
_NATIVE_ITEMS = frozenset({"string", "boolean"})


class UnstorableValue(ValueError):
    """A value that its column cannot hold, found before DuckDB sees it."""


def bound_as_is(t: ValueType) -> bool:
    """Whether a one-row ``INSERT ... VALUES`` binds a value of ``t`` with no ``CAST``.

    Scalars and their text go in as bound; lists of strings or booleans as Python
    lists. Each ``CAST`` left out of a statement is DuckDB work saved per request: the
    nine framework and ``Item`` columns of the HTTP benchmark cost 12% fewer
    instructions per ``INSERT`` without them (``bench/write_path.py --instructions``).
    """
    if t.secret:
        return False
    if t.kind in _NATIVE_PARAM or t.kind in _CAST_ON_BIND:
        return True
    item = t.item
    return t.kind == "list" and item is not None and not item.secret and item.kind in _NATIVE_ITEMS


def row_encoder(t: ValueType) -> Callable[[Any], Any]:
    """Turns a JSON-mode value into what a one-row ``INSERT`` binds (see :func:`bound_as_is`)."""
    if t.kind == "list" and bound_as_is(t):
        return _plain_list
    return encoder(t)


def _plain_list(v: Any) -> Any:
    # DuckDB would read a string bound to a list column as a list literal ("[a, b]").
    if v is None or type(v) is list:
        return v
    raise UnstorableValue(f"a list column got {type(v).__name__}")


def encoder(t: ValueType) -> Callable[[Any], Any]:
    """Turns a JSON-mode value into what the column's list parameter carries."""
    if not t.secret and t.kind in _NATIVE_PARAM:
        if t.kind == "float":
            return lambda v: None if v is None else float(v)
        return identity
    if t.secret or t.kind in ("timestamp", "date", "time", "decimal", "uuid"):
        return lambda v: None if v is None else str(v)
    return _to_json_text


def decoder(t: ValueType) -> Callable[[Any], Any] | None:
    """Turns what DuckDB returns into JSON-able Python values; ``None`` if nothing to do."""
    if t.secret or not t.has_json:
        return None
    if t.kind == "json":
        return _from_json_text
    if t.kind == "list":
        assert t.item is not None
        inner = decoder(t.item)
        assert inner is not None
        return lambda v: None if v is None else [inner(x) for x in v]
    decoders = {n: decoder(ft) for n, ft in t.fields}

    def struct(v: Any) -> Any:
        if v is None:
            return None
        return {k: (d(x) if (d := decoders.get(k)) else x) for k, x in v.items()}

    return struct


def identity(v: Any) -> Any:
    """A value that needs no encoding (the encoder of native columns)."""
    return v


def _to_json_text(v: Any) -> str | None:
    # pydantic-core's encoder: ~3x faster than json.dumps for the small nested values
    # of a bulk write (same compact JSON; non-ASCII stays UTF-8 instead of \u escapes).
    return None if v is None else to_json(v, fallback=str).decode()


def _from_json_text(v: Any) -> Any:
    if v is None or not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        return v
