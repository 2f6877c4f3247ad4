"""List queries: exact-match filters, ordering and paging, parsed against a model spec.

Filter values are parsed with the field's own type (``?total=10.0`` compares numbers,
``?created_at=2024-01-01T00:00:00Z`` compares timestamps) and turned into JSON values
that every store can compare.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import TypeAdapter, ValidationError

from ..errors import BadQuery
from .types import SCALAR_KINDS, value_type

if TYPE_CHECKING:
    from .model import Model

#: The default order: creation time, then id (ids are time-ordered too).
DEFAULT_ORDER: tuple[tuple[str, bool], ...] = (("created_at", False), ("id", False))


@dataclass(frozen=True)
class Query:
    """A list query: exact-match filters (JSON values), ordering and paging."""

    filters: dict[str, Any] = field(default_factory=dict)
    order: tuple[tuple[str, bool], ...] = ()  # (column, descending)
    limit: int | None = None
    offset: int = 0


_ADAPTERS: dict[tuple[type, str], TypeAdapter[Any]] = {}


def _adapter(cls: type[Model], name: str) -> TypeAdapter[Any]:
    key = (cls, name)
    ta = _ADAPTERS.get(key)
    if ta is None:
        ta = TypeAdapter(cast(Any, cls.model_fields[name].annotation))
        _ADAPTERS[key] = ta
    return ta


def filterable(cls: type[Model], name: str) -> bool:
    """Whether ``name`` is a scalar field of ``cls`` (lists, structs and JSON are not)."""
    info = cls.model_fields.get(name)
    if info is None:
        return False
    t = value_type(info.annotation)
    return t.kind in SCALAR_KINDS and not t.secret


def parse_filters(cls: type[Model], filters: Mapping[str, Any]) -> dict[str, Any]:
    """Parse ``field=value`` filters with each field's type.

    Raises:
        BadQuery: an unknown or non-scalar field, or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for name, raw in filters.items():
        if name not in cls.model_fields:
            raise BadQuery(
                f"unknown filter field {name!r}; fields of {cls.__name__}: "
                + ", ".join(cls.model_fields),
                field=name,
            )
        if not filterable(cls, name):
            raise BadQuery(
                f"cannot filter on {name!r}: only scalar fields can be filtered", field=name
            )
        if raw is None:
            out[name] = None
            continue
        ta = _adapter(cls, name)
        try:
            value = ta.validate_python(raw) if not isinstance(raw, str) else _from_text(ta, raw)
        except ValidationError as exc:
            raise BadQuery(f"filter {name}={raw!r}: {exc.errors()[0]['msg']}", field=name) from None
        out[name] = ta.dump_python(value, mode="json")
    return out


def _from_text(ta: TypeAdapter[Any], raw: str) -> Any:
    try:
        return ta.validate_python(raw)
    except ValidationError:
        # "10" for an int field, "true" for a bool, quoted JSON, ...
        return ta.validate_json(raw)


def parse_order(
    cls: type[Model], order: str | Sequence[str] | None
) -> tuple[tuple[str, bool], ...]:
    """``"-total"`` or ``["status", "-total"]`` -> ``(("total", True),)``.

    Raises:
        BadQuery: an unknown or non-scalar field.
    """
    if order is None or order == "" or order == []:
        return DEFAULT_ORDER
    items = [s for part in ([order] if isinstance(order, str) else order) for s in part.split(",")]
    out = []
    for item in items:
        item = item.strip()
        desc = item.startswith("-")
        name = item.lstrip("+-")
        if not filterable(cls, name):
            raise BadQuery(
                f"cannot order by {name!r}: not a scalar field of {cls.__name__}", field=name
            )
        out.append((name, desc))
    return tuple(out) + tuple(o for o in DEFAULT_ORDER if o[0] not in {n for n, _ in out})


def parse_page(limit: Any, offset: Any) -> tuple[int | None, int]:
    """Validate ``limit``/``offset`` (non-negative integers; text accepted).

    Raises:
        BadQuery: negative or not a number.
    """

    def as_int(label: str, value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise BadQuery(f"{label} must be a non-negative integer, got {value!r}") from None
        if number < 0 or isinstance(value, bool):
            raise BadQuery(f"{label} must be a non-negative integer, got {value!r}")
        return number

    return (None if limit is None else as_int("limit", limit)), (
        0 if offset is None else as_int("offset", offset)
    )


def build_query(
    cls: type[Model],
    filters: Mapping[str, Any],
    *,
    limit: Any = None,
    offset: Any = 0,
    order: str | Sequence[str] | None = None,
) -> Query:
    """A :class:`Query` from user input, every part checked."""
    lim, off = parse_page(limit, offset)
    return Query(parse_filters(cls, filters), parse_order(cls, order), lim, off)
