"""Storage-neutral value types derived from field annotations.

A :class:`ValueType` says what shape a field's values have (a string, a list of
integers, a struct, free JSON ...) without naming any database. Stores map it to
their own column types (DuckDB: ``VARCHAR``, ``BIGINT[]``, ``STRUCT(...)``, ``JSON``).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import types
import typing
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

Kind = Literal[
    "string",
    "integer",
    "float",
    "boolean",
    "timestamp",
    "date",
    "time",
    "decimal",
    "uuid",
    "list",
    "struct",
    "json",
]

#: Kinds whose values travel as themselves in JSON (no nested decoding needed).
SCALAR_KINDS: frozenset[str] = frozenset(
    {"string", "integer", "float", "boolean", "timestamp", "date", "time", "decimal", "uuid"}
)


@dataclass(frozen=True)
class ValueType:
    """The shape of a field's values.

    Attributes:
        kind: one of :data:`Kind`.
        item: the element type of a ``list``.
        fields: the ``(name, type)`` pairs of a ``struct``.
        secret: values are stored encrypted (a ``Secret`` field).
    """

    kind: Kind
    item: ValueType | None = None
    fields: tuple[tuple[str, ValueType], ...] = ()
    secret: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON description (for ``/config`` and the serialisable registry)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.item is not None:
            out["item"] = self.item.to_json()
        if self.fields:
            out["fields"] = {name: t.to_json() for name, t in self.fields}
        if self.secret:
            out["secret"] = True
        return out

    @property
    def has_json(self) -> bool:
        """Whether decoding stored values needs JSON parsing somewhere inside."""
        if self.kind == "json":
            return True
        if self.item is not None:
            return self.item.has_json
        return any(t.has_json for _, t in self.fields)


JSON = ValueType("json")
_SCALARS: dict[Any, ValueType] = {
    str: ValueType("string"),
    int: ValueType("integer"),
    float: ValueType("float"),
    bool: ValueType("boolean"),
    dt.datetime: ValueType("timestamp"),
    dt.date: ValueType("date"),
    dt.time: ValueType("time"),
    decimal.Decimal: ValueType("decimal"),
    uuid.UUID: ValueType("uuid"),
}


def value_type(annotation: Any, _depth: int = 0) -> ValueType:
    """Map a Python annotation to a :class:`ValueType` (anything unusual becomes JSON)."""
    if _depth > 8:
        return JSON
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return value_type(args[0], _depth + 1)
    if getattr(annotation, "__microlib_secret__", None) is not None:
        # Ciphertext is a string whatever the plaintext's type is.
        return ValueType("string", secret=True)
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return value_type(rest[0], _depth + 1)
        return JSON
    if origin is Literal:
        kinds = {type(a) for a in args}
        if kinds == {str}:
            return _SCALARS[str]
        if kinds == {int}:
            return _SCALARS[int]
        if kinds == {bool}:
            return _SCALARS[bool]
        return JSON
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = {type(m.value) for m in annotation}
        if values == {str}:
            return _SCALARS[str]
        if values == {int}:
            return _SCALARS[int]
        return JSON
    if origin in (list, set, frozenset, typing.Sequence) or annotation in (list, set):
        item = value_type(args[0], _depth + 1) if args else JSON
        return ValueType("list", item=item)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        members = tuple(
            (name, value_type(f.annotation, _depth + 1))
            for name, f in annotation.model_fields.items()
        )
        return ValueType("struct", fields=members) if members else JSON
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        members = tuple((name, value_type(t, _depth + 1)) for name, t in hints.items())
        return ValueType("struct", fields=members) if members else JSON
    return JSON
