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

from ..domain.model import FRAMEWORK_FIELDS, Model
from ..gc_pause import paused_gc
from ..store.base import Repeated

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


# Settings of ``model_config`` that change nothing in how the framework's values (an id,
# an aware datetime, a version string, 1, [], None) validate. The ``str_*`` settings and
# ``strict`` could; so could anything not named here.
_FRAMEWORK_NEUTRAL = frozenset({
    "title", "json_schema_extra", "json_schema_mode_override", "frozen", "validate_default",
    "validate_assignment", "revalidate_instances", "populate_by_name", "validate_by_name",
    "validate_by_alias", "loc_by_alias", "from_attributes", "protected_namespaces",
    "hide_input_in_errors", "defer_build", "use_attribute_docstrings", "cache_strings",
    "regex_engine", "allow_inf_nan", "validation_error_cause", "plugin_settings",
    "ignored_types",
})  # fmt: skip
_exact: weakref.WeakKeyDictionary[type[Model], bool] = weakref.WeakKeyDictionary()


def framework_set_after(cls: type[Model]) -> bool:
    """Whether :func:`validate_fresh` may validate ``cls``'s rows alone and set the
    framework's values afterwards: nothing in validation can see them (no validator
    function of any kind, decorated or ``Annotated``; no default factory that reads
    the data; no alias, which could name a framework key), the framework fields are
    ``Model``'s own, and no setting changes how their values validate."""
    exact = _exact.get(cls)
    if exact is None:
        decorators = cls.__pydantic_decorators__
        config = cls.model_config
        exact = _exact[cls] = not (
            _has_validator_function(cls.__pydantic_core_schema__)
            or any(
                f.alias is not None
                or f.validation_alias is not None
                or getattr(f, "default_factory_takes_validated_data", False)
                or getattr(f, "default_factory_takes_data", False)
                for f in cls.model_fields.values()
            )
            or decorators.field_validators
            or decorators.model_validators
            or decorators.validators
            or decorators.root_validators
            or cls.model_post_init is not Model.model_post_init
            or any(
                config.get(k) != Model.model_config.get(k)
                for k in config
                if k not in _FRAMEWORK_NEUTRAL
            )
            or any(
                repr(cls.model_fields[name]) != repr(Model.model_fields[name])
                for name in FRAMEWORK_FIELDS
            )
        )
    return exact


def _has_validator_function(schema: Any) -> bool:
    """Whether a pydantic-core schema holds a validator function anywhere (one that
    takes ``ValidationInfo`` could read the framework's values in ``info.data``)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get("type", "")).startswith("function-"):
                return True
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return False


def validate_fresh(
    cls: type[Model],
    rows: Sequence[dict[str, Any]],
    ids: Sequence[str],
    framework: dict[str, Any],
) -> tuple[list[Model], dict[str, Sequence[Any]]]:
    """New instances: what :func:`validate_many` gives for each row with its id and the
    ``framework`` values added (``port_flow`` a new empty list per row); and the
    columns of values it set itself (``{}``: none), which the caller need not read
    back from the instances.

    Where :func:`framework_set_after` allows it, the rows are validated as they are
    and the framework's values set in each instance afterwards: pydantic would return
    those very values (an aware datetime, strings, ``1``, ``None``), and validating
    seven more keys per row cost ~40% more (0.205 against 0.146 s per 100,000 rows,
    with 0.05 s more to make the merged dicts). The rows must be dicts without
    framework keys (the repository checks).

    Raises:
        pydantic.ValidationError: some row is invalid.
    """
    if not framework_set_after(cls):
        pairs = zip(rows, ids, strict=True)
        values = [{**row, "id": id, **framework, "port_flow": []} for row, id in pairs]
        return validate_many(cls, values), {}
    names = set(FRAMEWORK_FIELDS)
    with paused_gc(len(rows)):
        instances = validate_many(cls, rows)
        for instance, id in zip(instances, ids, strict=True):
            own = instance.__dict__
            own.update(framework)  # every key is there (a default): the order stays
            own["id"] = id
            own["port_flow"] = []
            instance.__pydantic_fields_set__.update(names)
    count = len(instances)
    known: dict[str, Sequence[Any]] = {"id": ids}
    for name, value in framework.items():
        if name != "port_flow":  # each row has its own list
            known[name] = Repeated(value, count)
    return instances, known


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
    """Point ``instance`` at the shared set equal to its own set of fields set (only an
    instance of a frozen model: assigning a field of another adds to its set)."""
    if not type(instance).model_config.get("frozen"):
        return
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
    frozen: dict[type[Model], bool] = {}
    for instance in instances:
        cls = type(instance)
        if not frozen.setdefault(cls, bool(cls.model_config.get("frozen"))):
            continue
        own = instance.__pydantic_fields_set__
        if last is not None and own == last:
            if own is not last:
                object.__setattr__(instance, "__pydantic_fields_set__", last)
            continue
        share_fields_set(instance)
        shared = instance.__pydantic_fields_set__
        last = shared if _shared_fields.get(frozenset(shared)) is shared else None
