"""``ModelSpec``: a model class compiled into data.

The spec is what the host, the stores and the HTTP layer look at: name, endpoint,
fields (with storage-neutral types and JSON schema), hooks, ports, relations and
commands. It is printable, comparable and serialisable (:meth:`ModelSpec.to_json`).
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .commands import CommandSpec, command_spec_of
from .ports import PortDeclaration, PortSpec
from .relations import RelationDeclaration, RelationSpec
from .secrets import check_secret_field
from .types import ValueType, value_type

_ENDPOINT_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

#: Names users cannot give a field, port, relation or command: they are framework API.
RESERVED = frozenset(
    {
        "create",
        "create_many",
        "find",
        "list",
        "count",
        "update",
        "delete",
        "emit",
        "on",
        "sql",
        "undo",
        "run_command",
        "spec",
        "to_json",
        "on_update",
        "on_delete",
        "migrate",
    }
)


@dataclass(frozen=True)
class FieldSpec:
    """One user field.

    Attributes:
        name: the field name.
        type: its storage-neutral :class:`ValueType`.
        required: no default: every create must give it.
        default: the default as JSON (``None`` when required or when the default is None).
        has_default: whether a default exists (a factory counts).
        frozen: ``Field(frozen=True)``: set at create, refused by updates.
        schema: the field's JSON schema.
    """

    name: str
    type: ValueType
    required: bool
    default: Any = None
    has_default: bool = False
    frozen: bool = False
    schema: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.to_json(),
            "required": self.required,
            "default": self.default,
            "frozen": self.frozen,
        }


@dataclass(frozen=True)
class ModelSpec:
    """A compiled model class (data, not behaviour)."""

    name: str
    endpoint: str
    datasource: str | None
    fields: dict[str, FieldSpec]
    schema: dict[str, Any] = field(compare=False)
    hooks: frozenset[str] = frozenset()
    ports: dict[str, PortSpec] = field(default_factory=dict)
    relations: dict[str, RelationSpec] = field(default_factory=dict)
    commands: dict[str, CommandSpec] = field(default_factory=dict)
    has_migrate: bool = False
    doc: str = ""

    @property
    def event_prefix(self) -> str:
        """Model name in event names: the lower-case class name (``order``)."""
        return self.name.lower()

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """Fields holding ``Secret`` values."""
        return tuple(n for n, f in self.fields.items() if f.type.secret)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-able data (for ``/config`` and the version registry)."""
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "datasource": self.datasource,
            "fields": {n: f.to_json() for n, f in self.fields.items()},
            "schema": self.schema,
            "hooks": sorted(self.hooks),
            "ports": {n: p.to_json() for n, p in self.ports.items()},
            "relations": {n: r.to_json() for n, r in self.relations.items()},
            "commands": {n: c.to_json() for n, c in self.commands.items()},
            "migrate": self.has_migrate,
            "doc": self.doc,
        }


def compile_spec(
    cls: type[BaseModel], base: type[BaseModel], endpoint: str, datasource: str | None
) -> ModelSpec:
    """Compile a model class into its spec.

    Args:
        cls: the model class (a pydantic model).
        base: the framework's base class (``Model``): the fields it declares are the
            framework's, and its hooks and docstring are not the model's own.
        endpoint: the class's ``endpoint`` keyword (or its default).
        datasource: the class's ``datasource`` keyword.

    Raises:
        TypeError: a bad endpoint, a reserved or framework name, or an undefined name
            referenced by a declaration.
    """
    name = cls.__name__
    if not isinstance(endpoint, str) or not _ENDPOINT_RE.match(endpoint):
        raise TypeError(
            f"{name}: endpoint must be lower-case letters, digits and '_' (it is also the "
            f"table name), got {endpoint!r}"
        )
    if datasource is not None and (not isinstance(datasource, str) or "://" not in datasource):
        raise TypeError(f"{name}: datasource must be a URL like 'memory://', got {datasource!r}")

    fields: dict[str, FieldSpec] = {}
    input_props = _schema(cls, "validation").get("properties", {})
    for fname, info in cls.model_fields.items():
        if fname in base.model_fields:
            redeclared = any(
                fname in vars(k).get("__annotations__", {})
                for k in cls.__mro__
                if k is not base and issubclass(k, base)
            )
            if redeclared:
                raise TypeError(f"{name}: field {fname!r} is set by the framework; rename it")
            continue
        _check_name(name, fname, "field")
        check_secret_field(name, fname, info.annotation, _declared_default(info))
        fields[fname] = _field_spec(fname, info, input_props.get(fname, {}))

    ports: dict[str, PortSpec] = {}
    relations: dict[str, RelationSpec] = {}
    commands: dict[str, CommandSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, PortDeclaration):
                _check_name(name, attr, "port")
                ports[attr] = value.spec
            elif isinstance(value, RelationDeclaration):
                _check_name(name, attr, "relation")
                relations[attr] = value.spec
            else:
                target = value.__func__ if isinstance(value, staticmethod | classmethod) else value
                cmd = command_spec_of(target)
                if cmd is not None:
                    _check_name(name, attr, "command")
                    commands[attr] = CommandSpec(attr, cmd.acl, cmd.description, target)

    for rel in relations.values():
        # one_to_one may sit on either side: without the field here, the target holds it.
        if rel.kind == "many_to_one" and rel.foreign_key not in fields:
            raise TypeError(
                f"{name}.{rel.name}: foreign_key {rel.foreign_key!r} is not a field of {name}"
            )
        if rel.kind == "contains_many" and (rel.array_key or rel.foreign_key) not in fields:
            raise TypeError(
                f"{name}.{rel.name}: {rel.array_key or rel.foreign_key!r} is not a field of {name}"
            )

    hooks = frozenset(
        h for h in ("on_update", "on_delete") if getattr(cls, h) is not getattr(base, h)
    )
    return ModelSpec(
        name=name,
        endpoint=endpoint,
        datasource=datasource,
        fields=fields,
        schema=_schema(cls, "serialization"),
        hooks=hooks,
        ports=ports,
        relations=relations,
        commands=commands,
        has_migrate=callable(getattr(cls, "migrate", None)),
        doc=inspect.cleandoc(cls.__doc__ or "") if cls.__doc__ is not base.__doc__ else "",
    )


def _check_name(model: str, attr: str, what: str) -> None:
    if attr in RESERVED:
        raise TypeError(
            f"{model}: {what} {attr!r} would hide the framework's {attr}(); pick another name"
        )
    if attr.startswith("_"):
        raise TypeError(f"{model}: {what} names cannot start with '_' ({attr!r})")


def _field_spec(fname: str, info: FieldInfo, schema: dict[str, Any]) -> FieldSpec:
    required = info.is_required()
    has_default = not required
    default: Any = None
    if info.default is not PydanticUndefined:
        default = _jsonable(info.default)
    elif info.default_factory is not None:
        try:
            default = _jsonable(info.default_factory())  # type: ignore[call-arg]
        except TypeError:
            default = None
    frozen = bool(info.frozen)
    return FieldSpec(
        name=fname,
        type=value_type(info.annotation),
        required=required,
        default=default,
        has_default=has_default,
        frozen=frozen,
        schema=schema,
    )


def _declared_default(info: FieldInfo) -> Any:
    """The field's default as written (``None`` when there is none)."""
    if info.default is not PydanticUndefined:
        return info.default
    return info.default_factory if info.default_factory is not None else None


def _jsonable(value: Any) -> Any:
    from pydantic import TypeAdapter

    try:
        out = TypeAdapter(type(value)).dump_python(value, mode="json")
        json.dumps(out)
        return out
    except Exception:
        return repr(value)


def _schema(cls: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
    try:
        return cls.model_json_schema(mode=mode)
    except Exception as exc:  # a field type pydantic cannot describe
        return {
            "title": cls.__name__,
            "type": "object",
            "description": f"schema unavailable: {exc}",
        }
