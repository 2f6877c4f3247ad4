"""The JSON-mode records of many new instances, built column by column.

``create_many`` stores what ``model_dump(mode="json")`` gives for each instance. For
100,000 rows, pydantic-core's dump of the list takes ~0.29 s: it walks every value of
every row through the model's serializer. Most values are their own dump: a ``str``,
``int``, ``float``, ``bool``, ``None`` or ``Literal`` field holds an immutable value
that the dump returns as it is. :func:`dump_records` copies each instance's own
``__dict__`` (~0.06 s per 100,000) and dumps only the other fields (timestamps, lists,
dicts, nested models), one column at a time with a ``TypeAdapter`` of the field's type
(one instant shared by every row, such as ``created_at`` in ``create_many``, is dumped
once).

That is exact only where the model's dump is the plain dump of its fields' types, so a
model is taken this way only if it has no serializer of its own (``field_serializer``,
``model_serializer``, ``PlainSerializer`` and the like), no computed field, no excluded
or aliased field, and no ``model_config`` setting beyond those that only change
validation or the JSON schema (``ser_json_timedelta``, ``json_encoders``, ``extra``,
``arbitrary_types_allowed``... would change the dump or what an adapter can be built
for). Validators (root validators and ``model_post_init`` included) may leave another
type than the one declared: for a model with any, each column said to hold its own dump
is checked to hold only such values. An instance whose ``__dict__`` holds more than its
fields (a ``cached_property``) is not copied. Anything else takes pydantic's full dump.

:func:`dump_columns` gives the same values by field, for a store that takes a bulk
write's columns as they are (DuckDB's Arrow insert): no record per row is made at all.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
import weakref
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, is_, itemgetter, methodcaller
from typing import Any, Literal

from pydantic import TypeAdapter

from ..domain.model import Model
from ..gc_pause import paused_gc
from ..store.base import Repeated
from .bulk import list_adapter

#: Types whose values are immutable and their own JSON-mode dump.
_SELF_DUMPED = frozenset({str, int, float, bool, type(None)})
#: Settings of ``model_config`` that change validation or the JSON schema only. Any other
#: setting a model makes its own (``ser_json_timedelta``, ``json_encoders``,
#: ``arbitrary_types_allowed``, ``extra``...) may change its dump: the full dump then.
_INERT = frozenset({
    "title", "json_schema_extra", "json_schema_mode_override", "str_strip_whitespace",
    "str_to_lower", "str_to_upper", "str_min_length", "str_max_length", "frozen",
    "validate_default", "validate_assignment", "revalidate_instances", "strict",
    "populate_by_name", "validate_by_name", "validate_by_alias", "loc_by_alias",
    "from_attributes", "protected_namespaces", "hide_input_in_errors", "defer_build",
    "use_attribute_docstrings", "cache_strings", "regex_engine", "allow_inf_nan",
    "validation_error_cause", "plugin_settings", "ignored_types",
})  # fmt: skip


class _Plan(typing.NamedTuple):
    """How to dump a model's instances: the fields to dump by type, the others checked."""

    dumped: tuple[_Dumped, ...]
    checked: tuple[str, ...]  # fields said to hold their own dump (checked if validated)
    names: tuple[str, ...]  # every field, in order: an instance's ``__dict__`` holds these


class _Dumped(typing.NamedTuple):
    """A field dumped by the type of its values."""

    name: str
    column: TypeAdapter[Any]  # ``list[annotation]``
    one: TypeAdapter[Any]  # ``annotation``
    plain_list: bool  # a list of self-dumped items: an empty one dumps as ``[]``


_plans: weakref.WeakKeyDictionary[type[Model], _Plan | None] = weakref.WeakKeyDictionary()


def dump_records(cls: type[Model], instances: Sequence[Model]) -> list[dict[str, Any]]:
    """``model_dump(mode="json")`` of every instance (all of ``cls``), at once."""
    plan = _plan_of(cls)
    with paused_gc(len(instances)):
        dicts = None if plan is None else _own_dicts(plan, instances)
        if plan is None or dicts is None:
            return list_adapter(cls).dump_python(list(instances), mode="json")
        # A copy of each instance's own values (~0.06 s per 100,000), then the dumps of
        # the other fields set in: cheaper than a dict made anew from the columns.
        records: list[dict[str, Any]] = list(map(methodcaller("copy"), dicts))
        for name, column in _dumped_columns(plan, dicts, {}).items():
            if isinstance(column, Repeated):
                value = column.value
                for record in records:
                    record[name] = value
            else:
                for record, value in zip(records, column, strict=True):
                    record[name] = value
    return records


def dump_columns(
    cls: type[Model],
    instances: Sequence[Model],
    known: dict[str, Sequence[Any]] | None = None,
) -> dict[str, Sequence[Any]] | None:
    """What :func:`dump_records` gives, by field: each field's values in the order of
    ``instances`` (:class:`~microlib_kernel.store.base.Repeated` where every row holds
    one instant). ``None`` where only pydantic's full dump is exact (see the module doc).

    ``known`` holds columns of the instances' own values that the caller knows already
    (a bulk create's ids and framework values): they are not read back from each
    instance, and are dumped as any other column of their type.
    """
    plan = _plan_of(cls)
    if plan is None:
        return None
    known = known or {}
    with paused_gc(len(instances)):
        dicts = _own_dicts(plan, instances)
        if dicts is None:
            return None
        columns: dict[str, Sequence[Any]] = {
            name: known[name] if name in known else list(map(itemgetter(name), dicts))
            for name in plan.names
        }
        columns.update(_dumped_columns(plan, dicts, columns))
    return columns


def _plan_of(cls: type[Model]) -> _Plan | None:
    try:
        return _plans[cls]
    except KeyError:
        try:
            plan = _plan(cls)
        except Exception:  # a type pydantic makes no adapter for alone: the full dump
            plan = None
        _plans[cls] = plan
        return plan


def _own_dicts(plan: _Plan, instances: Sequence[Model]) -> list[dict[str, Any]] | None:
    """Each instance's ``__dict__`` (``None``: some value is not what :class:`_Plan`
    takes it for, and only pydantic's full dump is exact)."""
    for name in plan.checked:
        kinds = set(map(type, map(attrgetter(name), instances)))
        if not kinds <= _SELF_DUMPED:
            return None
    dicts = list(map(attrgetter("__dict__"), instances))
    if set(map(len, dicts)) - {len(plan.names)}:
        return None  # something beyond the fields (a cached_property's value)
    return dicts


def _dumped_columns(
    plan: _Plan, dicts: list[dict[str, Any]], known: dict[str, Sequence[Any]]
) -> dict[str, Sequence[Any]]:
    """The JSON-mode dumps of the fields that are not their own dump, by field (values
    read from ``known`` when it has their column, else from ``dicts``)."""
    count = len(dicts)
    out: dict[str, Sequence[Any]] = {}
    for name, column_adapter, one_adapter, plain_list in plan.dumped:
        column = known[name] if name in known else list(map(itemgetter(name), dicts))
        first = column[0] if column else None
        if isinstance(column, Repeated) or (
            isinstance(first, dt.datetime) and all(map(is_, column, repeat(first)))
        ):
            # One object in every row (a bulk create's timestamps: pydantic keeps the
            # datetime it is given): its dump is made once.
            out[name] = Repeated(one_adapter.dump_python(first, mode="json"), count)
        elif (
            plain_list
            and type(first) is list
            and not first
            and set(map(type, column)) == {list}  # then == compares lists only
            and column.count([]) == len(column)
        ):
            # Empty lists in every row (a bulk create's port_flow): a new one each.
            out[name] = [[] for _ in range(count)]
        else:
            out[name] = column_adapter.dump_python(column, mode="json")
    return out


def _plan(cls: type[Model]) -> _Plan | None:
    """How :func:`dump_records` dumps ``cls`` (``None``: by pydantic's full dump)."""
    decorators = cls.__pydantic_decorators__
    config = cls.model_config
    if (
        decorators.field_serializers
        or decorators.model_serializers
        or cls.__pydantic_computed_fields__
        or any(config.get(k) != Model.model_config.get(k) for k in config if k not in _INERT)
    ):
        return None
    validated = bool(
        decorators.field_validators
        or decorators.model_validators
        or decorators.validators
        or decorators.root_validators
        or cls.model_post_init is not Model.model_post_init
    )
    dumped, checked = [], []
    for name, info in cls.model_fields.items():
        if info.exclude or getattr(info, "exclude_if", None) is not None:
            return None
        if info.serialization_alias is not None or not _constraints_only(info.metadata):
            return None
        if _self_dumped(info.annotation):
            if validated:
                checked.append(name)
            continue
        annotation: Any = info.annotation
        column, one = TypeAdapter(list[annotation]), TypeAdapter(annotation)
        dumped.append(_Dumped(name, column, one, _plain_list(annotation)))
    return _Plan(tuple(dumped), tuple(checked), tuple(cls.model_fields))


def _constraints_only(metadata: list[Any]) -> bool:
    """Whether a field's metadata only constrains values (``min_length=1``): no
    serializer or other type-changing annotation."""
    return all(type(m).__module__ == "annotated_types" for m in metadata)


def _plain_list(annotation: Any) -> bool:
    """Whether ``annotation`` is ``list[X]`` or ``list[X] | None`` of self-dumped items."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _plain_list(args[0])
    items = typing.get_args(annotation)
    return typing.get_origin(annotation) is list and len(items) == 1 and _self_dumped(items[0])


def _self_dumped(annotation: Any) -> bool:
    """Whether every value of ``annotation`` is immutable and its own JSON-mode dump."""
    if annotation in _SELF_DUMPED:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return all(type(a) in _SELF_DUMPED for a in args)
    if origin is typing.Union or origin is types.UnionType:
        return all(_self_dumped(a) for a in args)
    return False
