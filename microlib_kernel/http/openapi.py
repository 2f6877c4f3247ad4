"""OpenAPI 3.1 built from the live models.

Each published model gets its own paths (``/models/orders``, ``/models/orders/{id}``,
one path per relation, command and inbound port) and three schemas from pydantic:
``Order`` (a response: every field, framework fields included), ``OrderCreate`` (the
create body: user fields only) and ``OrderUpdate`` (the same, nothing required). Nested
types are namespaced by model (``Customer.Address``) so two models never clash. Every
error status a route can answer is documented with the error shape.

:class:`OpenAPICache` rebuilds the document only when the registry changed.
"""

from __future__ import annotations

import copy
import inspect
import re
import typing
from typing import TYPE_CHECKING, Any, cast

from pydantic import TypeAdapter, create_model
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..domain.ids import _ID_RE
from ..domain.model import FRAMEWORK_FIELDS
from ..domain.query import filterable
from .openapi_common import (
    ADMIN_PATHS,
    COMMON_SCHEMAS,
    ERROR_TEXT,
    error_responses,
    json_content,
    ref,
)
from .openapi_deploy import DEPLOY_PATHS, DEPLOY_SCHEMAS, DEPLOY_SECURITY

if TYPE_CHECKING:
    from ..host.host import Host
    from ..host.registry import ModelEntry, ModelVersion

_NAME_RE = re.compile(r"[^A-Za-z0-9._-]")
ID_PATTERN = _ID_RE.pattern
IF_MATCH_PATTERN = r'^(\*|(W/)?"?[0-9]{1,18}"?)$'


def fingerprint(host: Host) -> tuple[Any, ...]:
    """What the document depends on: changes whenever a publish, route or unpublish does."""
    entries = host.registry.entries(published_only=False)
    return (
        *(
            (e.name, e.endpoint, tuple(e.versions), tuple(e.routes.items()), e.published)
            for e in entries
        ),
        bool(host.settings.auth_tokens),
    )


class OpenAPICache:
    """The document for a host, rebuilt when :func:`fingerprint` changes."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._key: tuple[Any, ...] | None = None
        self._doc: dict[str, Any] = {}
        self.builds = 0

    def document(self) -> dict[str, Any]:
        key = fingerprint(self.host)
        if key != self._key:
            self._doc = build_openapi(self.host)
            self._key = key
            self.builds += 1
        return self._doc


def build_openapi(host: Host) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``host``'s API as it is now."""
    root = host.settings.api_root.rstrip("/")
    auth = bool(host.settings.auth_tokens)
    schemas: dict[str, Any] = copy.deepcopy(COMMON_SCHEMAS)
    paths: dict[str, Any] = {}
    for path, item in {**ADMIN_PATHS, **DEPLOY_PATHS}.items():
        paths[root + path] = copy.deepcopy(item)
    schemas.update(copy.deepcopy(DEPLOY_SCHEMAS))
    if auth:
        paths[root + "/health"]["get"]["security"] = []
        for path in ("/config", "/events", "/sql"):
            for op in paths[root + path].values():
                op["responses"].update(error_responses({401}))
    tags = []
    for entry in sorted(host.registry.entries(), key=lambda e: e.endpoint):
        mv = entry.versions.get(entry.active or "") or entry.latest()
        names = _model_schemas(mv, schemas)
        builder = _ModelPaths(host, entry, mv, names, auth)
        for path, item in builder.paths().items():
            paths[f"{root}/models/{entry.endpoint}{path}"] = item
        tags.append({"name": entry.name, "description": mv.spec.doc or f"{entry.name} model"})
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "microlib API",
            "version": __version__,
            "description": (
                "The REST API of a microlib host, generated from the models published now. "
                'Errors are JSON: {"error": message, "error_type": class, ...details}.'
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            *tags,
            {"name": "host", "description": "The host itself"},
            {"name": "deploy", "description": "Code streaming and versions (the deploy token)"},
        ],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": copy.deepcopy(DEPLOY_SECURITY)},
    }
    if auth:
        doc["components"]["securitySchemes"]["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        doc["security"] = [{"bearerAuth": []}]
    return doc


def _safe(name: str) -> str:
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


def _model_schemas(mv: ModelVersion, schemas: dict[str, Any]) -> dict[str, Any]:
    """Add ``Name``, ``NameCreate``, ``NameUpdate`` (and nested types); return their names."""
    cls = mv.cls
    model = _safe(mv.name)
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


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
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


class _ModelPaths:
    """The path items of one model."""

    def __init__(
        self, host: Host, entry: ModelEntry, mv: ModelVersion, names: dict[str, Any], auth: bool
    ):
        self.host = host
        self.entry = entry
        self.mv = mv
        self.names = names
        self.auth = auth
        self.tag = entry.name
        self.model_ref = ref(names["model"])

    # -- shared pieces -------------------------------------------------------------------

    def _version_header(self) -> dict[str, Any]:
        return {
            "name": "X-Microlib-Version",
            "in": "header",
            "required": False,
            "description": "Pin the model version that serves this request.",
            "schema": {"type": "string", "enum": list(self.entry.versions)},
        }

    def _id_param(self) -> dict[str, Any]:
        return {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERN, "maxLength": 200},
        }

    def _roles_header(self) -> list[dict[str, Any]]:
        if self.auth:
            return []
        return [
            {
                "name": "X-Microlib-Roles",
                "in": "header",
                "required": False,
                "description": "The caller's roles, comma-separated (only while auth is off).",
                "schema": {"type": "string"},
            }
        ]

    def _ok(self, schema: dict[str, Any], description: str, status: str = "200") -> dict:
        headers: dict[str, Any] = {
            "X-Microlib-Version": {
                "description": "The model version that served the request.",
                "required": True,
                "schema": {"type": "string"},
            }
        }
        if status == "201":
            headers["Location"] = {
                "description": "The URL path of the new instance.",
                "required": True,
                "schema": {"type": "string"},
            }
        return {status: {"description": description, "headers": headers, **json_content(schema)}}

    def _op(
        self,
        summary: str,
        responses: dict[str, Any],
        errors: tuple[int, ...],
        params: list[dict[str, Any]],
        body: dict[str, Any] | None = None,
        body_required: bool = True,
    ) -> dict[str, Any]:
        statuses = set(errors) | {404, 500} | ({401} if self.auth else set())
        if body is not None:
            statuses |= {400, 413}
        op: dict[str, Any] = {
            "tags": [self.tag],
            "summary": summary,
            "parameters": [*params, self._version_header()],
            "responses": {**responses, **error_responses(statuses)},
        }
        if body is not None:
            op["requestBody"] = {"required": body_required, **json_content(body)}
        return op

    # -- the paths -------------------------------------------------------------------------

    def paths(self) -> dict[str, Any]:
        out = {"": self._collection(), "/{id}": self._item()}
        spec = self.mv.spec
        by_id = {"parameters": [self._id_param()]}
        for name, rel in spec.relations.items():
            if name not in spec.commands:
                out[f"/{{id}}/{name}"] = {**by_id, "get": self._relation(rel)}
        for name in spec.commands:
            out[f"/{{id}}/{name}"] = {**by_id, "patch": self._command(name)}
        for name, port in spec.ports.items():
            if port.type == "inbound":
                out[f"/{{id}}/ports/{name}"] = {**by_id, "post": self._port(name)}
        return out

    def _collection(self) -> dict[str, Any]:
        cls, model = self.mv.cls, self.mv.name
        props: dict[str, Any] = {}
        for f in cls.model_fields:
            if filterable(cls, f):
                props[f] = self.names["input_props"].get(f) or self._field_schema(f)
        filters = [
            {
                "name": f,
                "in": "query",
                "required": False,
                "description": f"Only instances whose {f} equals this value.",
                "schema": _not_null(s),
            }
            for f, s in props.items()
        ]
        orders = [x for f in props for x in (f, f"-{f}")]
        count_desc = '\'all\' -> {"total": n}; \'field:value\' -> {"field": value, "total": n}'
        fields = "|".join(re.escape(f) for f in props)
        count_schema = {"type": "string", "pattern": f"^(all|({fields}):.*)$" if props else "^all$"}
        paging = [
            _query("__limit", {"type": "integer", "minimum": 0}, "At most this many."),
            _query("__offset", {"type": "integer", "minimum": 0}, "Skip this many first."),
            _query(
                "__order",
                {"type": "string", "enum": orders},
                "Order by a field, '-field' descending (several: comma-separated).",
            ),
            _query("__count", count_schema, "Count instead of listing: " + count_desc),
            _query("count", count_schema, "Same as __count (for Aegis clients)."),
        ]
        listing = {
            "anyOf": [{"type": "array", "items": self.model_ref}, ref("Count")],
        }
        key = {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Becomes the id; a replay answers 200 with the same instance.",
            "schema": {"type": "string", "pattern": ID_PATTERN, "maxLength": 200},
        }
        created = self._ok(self.model_ref, f"The {model} created", "201")
        replay = self._ok(self.model_ref, "An idempotent replay: the instance created first")
        return {
            "get": self._op(
                f"List or count {model} instances",
                self._ok(listing, f"The {model} instances, or a count"),
                (400,),
                [*filters, *paging],
            ),
            "post": self._op(
                f"Create a {model}",
                {**created, **replay},
                (400,),
                [key],
                ref(self.names["create"]),
            ),
        }

    def _field_schema(self, name: str) -> dict[str, Any]:
        info = self.mv.cls.model_fields[name]
        try:
            return TypeAdapter(cast(Any, info.annotation)).json_schema()
        except Exception:
            return {"type": "string"}

    def _item(self) -> dict[str, Any]:
        model, spec = self.mv.name, self.mv.spec
        one: list[dict[str, Any]] = [self.model_ref]
        extra: list[dict[str, Any]] = []
        if spec.relations:
            extra.append(
                _query(
                    "relation",
                    {"type": "string", "enum": list(spec.relations)},
                    f'Answer {{"{spec.event_prefix}": {model}, "<relation>": related}}.',
                )
            )
            one.append({"type": "object", "required": [spec.event_prefix]})
        if spec.commands:
            extra.append(
                _query(
                    "command",
                    {"type": "string", "enum": list(spec.commands)},
                    "Run a command without arguments; answer its result.",
                )
            )
            extra.extend(self._roles_header())
            for name in spec.commands:
                one.append(command_schemas(self.mv, name, self.model_ref)[1])
        got = one[0] if len(one) == 1 else {"anyOf": one}
        if {} in one:
            got = {}
        return {
            "parameters": [self._id_param()],
            "get": self._op(
                f"Get a {model}",
                self._ok(got, f"The {model}"),
                (400, 403) if spec.commands else (400,),
                extra,
            ),
            "patch": self._op(
                f"Update a {model}",
                self._ok(self.model_ref, f"The {model} after the update"),
                (400, 409),
                [
                    {
                        "name": "If-Match",
                        "in": "header",
                        "required": False,
                        "description": "Refuse with 409 unless the revision is still this.",
                        "schema": {"type": "string", "pattern": IF_MATCH_PATTERN},
                    }
                ],
                ref(self.names["update"]),
            ),
            "delete": self._op(
                f"Delete a {model}",
                self._ok(self.model_ref, f"The deleted {model}"),
                (400,),
                [],
            ),
        }

    def _relation(self, rel: Any) -> dict[str, Any]:
        target = self.host.registry.find(rel.target)
        item: dict[str, Any] = {}
        if target is not None and target.published:
            item = ref(_safe(target.name))
        if rel.kind in ("many_to_one", "one_to_one"):
            schema: dict[str, Any] = {"anyOf": [item, {"type": "null"}]} if item else {}
        else:
            schema = {"type": "array", "items": item} if item else {"type": "array"}
        return self._op(
            f"The {rel.target} related to a {self.mv.name} ({rel.kind})",
            self._ok(schema, f"The related {rel.target}"),
            (400,),
            [],
        )

    def _command(self, name: str) -> dict[str, Any]:
        args, result = command_schemas(self.mv, name, self.model_ref)
        acl = self.mv.spec.commands[name].acl
        summary = f"Run the command {name}" + (f" (roles: {', '.join(acl)})" if acl else "")
        return self._op(
            summary,
            self._ok(result, f"The result of {name}"),
            (400, 403),
            self._roles_header(),
            args,
            body_required=False,
        )

    def _port(self, name: str) -> dict[str, Any]:
        return self._op(
            f"Call the inbound port {name}",
            self._ok(self.model_ref, f"The {self.mv.name} after the port ran"),
            (400, 502, 503, 504),
            [],
            {"type": "object", "additionalProperties": True},
            body_required=False,
        )


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


__all__ = ["ERROR_TEXT", "OpenAPICache", "build_openapi", "fingerprint"]
