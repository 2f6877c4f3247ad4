"""Model schemas for the OpenAPI document, from pydantic.

Each model gets ``Order`` (a response: every field, framework fields included),
``OrderCreate`` (the create body: user fields only) and ``OrderUpdate`` (the same,
nothing required). Nested types are namespaced by model (``Customer.Address``) so two
models never clash. Commands get argument and result schemas from their signatures.
"""

from __future__ import annotations

import copy
import inspect
import re
import typing
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, create_model
from pydantic.json_schema import models_json_schema

from ..domain.model import FRAMEWORK_FIELDS

if TYPE_CHECKING:
    from ..host.registry import ModelVersion

_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(name: str) -> str:
    return _NAME_RE.sub("_", name)


def _refs(value: Any, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                found.add(v.rsplit("/", 1)[-1])
            else:
                _refs(v, found)
    elif isinstance(value, list):
        for v in value:
            _refs(v, found)
    return found


def _unique(name: str, schemas: dict[str, Any]) -> str:
    out, n = name, 2
    while out in schemas:
        out, n = f"{name}{n}", n + 1
    return out


def model_schemas(mv: ModelVersion, schemas: dict[str, Any]) -> dict[str, Any]:
    """Add ``Name``, ``NameCreate``, ``NameUpdate`` (and nested types); return their names."""
    cls = mv.cls
    model = safe_name(mv.name)
    try:
        keys, top = models_json_schema(
            [(cls, "validation"), (cls, "serialization")],
            ref_template=f"#/components/schemas/{model}.{{model}}",
        )
    except Exception:  # a field type pydantic cannot describe: document it loosely
        keys, top = {}, {}
    defs = {f"{model}.{k}": v for k, v in top.get("$defs", {}).items()}
    own_in = keys.get((cls, "validation"), {}).get("$ref", "").rsplit("/", 1)[-1]
    own_out = keys.get((cls, "serialization"), {}).get("$ref", "").rsplit("/", 1)[-1]
    loose = {"type": "object", "additionalProperties": True}
    out_schema = copy.deepcopy(defs.get(own_out, loose))
    in_schema = copy.deepcopy(defs.get(own_in, loose))
    # The model's own defs stay only if a nested type refers back to them.
    others = {k: v for k, v in defs.items() if k not in (own_in, own_out)}
    used = _refs(others, set())
    for k, v in defs.items():
        if k in others or k in used:
            schemas[k] = v

    names: dict[str, Any] = {"model": _unique(model, schemas)}
    props = out_schema.get("properties")
    if isinstance(props, dict):
        out_schema["required"] = list(props)  # to_json() writes every field
    out_schema["title"] = mv.name
    schemas[names["model"]] = out_schema

    create = in_schema
    create_props = create.get("properties")
    if isinstance(create_props, dict):
        for f in FRAMEWORK_FIELDS:
            create_props.pop(f, None)
        create["required"] = [r for r in create.get("required", []) if r not in FRAMEWORK_FIELDS]
        if not create["required"]:
            del create["required"]
    names["create"] = _unique(f"{model}Create", schemas)
    schemas[names["create"]] = {**create, "title": f"{mv.name} (create)"}
    update = copy.deepcopy(create)
    update.pop("required", None)
    names["update"] = _unique(f"{model}Update", schemas)
    schemas[names["update"]] = {**update, "title": f"{mv.name} (changes)"}
    names["input_props"] = create_props if isinstance(create_props, dict) else {}
    return names


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema without its ``null`` branch (a query value is never null)."""
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        rest = [s for s in any_of if s != {"type": "null"}]
        base = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**base, **rest[0]} if len(rest) == 1 else {**base, "anyOf": rest}
    return {k: v for k, v in schema.items() if k != "default"}


def _returns(fn: Any) -> Any:
    try:
        return typing.get_type_hints(fn).get("return", inspect.Signature.empty)
    except Exception:
        return inspect.Signature.empty


def command_schemas(mv: ModelVersion, name: str, model_ref: dict[str, Any]) -> tuple[dict, dict]:
    """(arguments schema, result schema) of a command, from its signature."""
    spec = mv.spec.commands[name]
    fn = spec.function or getattr(mv.cls, name)
    loose: dict[str, Any] = {"type": "object", "additionalProperties": True}
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
        fields: dict[str, Any] = {}
        for i, (pname, p) in enumerate(sig.parameters.items()):
            if i == 0 and pname in ("self", "cls"):
                continue
            if p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
                continue
            if p.kind is p.VAR_KEYWORD:
                raise TypeError("**kwargs: any arguments")
            default = ... if p.default is p.empty else p.default
            fields[pname] = (hints.get(pname, Any), default)
        args = create_model(f"{mv.name}_{name}_args", **fields).model_json_schema()
        args["additionalProperties"] = False
        args.pop("title", None)
    except Exception:
        args = loose
    ret = _returns(fn)
    if ret is None or ret is type(None):
        result = model_ref
    elif ret is inspect.Signature.empty or ret is Any:
        result = {}
    else:
        try:
            result = TypeAdapter(ret).json_schema(mode="serialization")
            if "$defs" in result:  # nested types: not worth namespacing, keep it loose
                result = {}
        except Exception:
            result = {}
    return args, result
