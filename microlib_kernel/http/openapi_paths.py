"""The OpenAPI paths of one published model: collection, instance, relations, commands, ports."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, cast

from pydantic import TypeAdapter

from ..domain.ids import _ID_RE
from ..domain.query import filterable
from .openapi_common import error_responses, json_content, ref
from .openapi_schemas import command_schemas, not_null, safe_name

if TYPE_CHECKING:
    from ..host.context import HostContext
    from ..host.registry import ModelEntry, ModelVersion

ID_PATTERN = _ID_RE.pattern
IF_MATCH_PATTERN = r'^(\*|(W/)?"?[0-9]{1,18}"?)$'


class ModelPaths:
    """The path items of one model."""

    def __init__(
        self,
        ctx: HostContext,
        entry: ModelEntry,
        mv: ModelVersion,
        names: dict[str, Any],
        auth: bool,
    ):
        self.ctx = ctx
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
                "schema": not_null(s),
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
                f"Create {_a(model)}",
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
                f"Get {_a(model)}",
                self._ok(got, f"The {model}"),
                (400, 403) if spec.commands else (400,),
                extra,
            ),
            "patch": self._op(
                f"Update {_a(model)}",
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
                f"Delete {_a(model)}",
                self._ok(self.model_ref, f"The deleted {model}"),
                (400,),
                [],
            ),
        }

    def _relation(self, rel: Any) -> dict[str, Any]:
        target = self.ctx.registry.find(rel.target)
        item: dict[str, Any] = {}
        if target is not None and target.published:
            item = ref(safe_name(target.name))
        if rel.kind in ("many_to_one", "one_to_one"):
            schema: dict[str, Any] = {"anyOf": [item, {"type": "null"}]} if item else {}
        else:
            schema = {"type": "array", "items": item} if item else {"type": "array"}
        return self._op(
            f"The {rel.target} related to {_a(self.mv.name)} ({rel.kind})",
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


def _a(noun: str) -> str:
    """``"Order"`` -> ``"an Order"``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


__all__ = ["ID_PATTERN", "IF_MATCH_PATTERN", "ModelPaths"]
