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
from typing import TYPE_CHECKING, Any

from ..version import __version__
from .openapi_common import ADMIN_PATHS, COMMON_SCHEMAS, error_responses
from .openapi_deploy import DEPLOY_PATHS, DEPLOY_SCHEMAS, DEPLOY_SECURITY
from .openapi_paths import IF_MATCH_PATTERN, ModelPaths
from .openapi_schemas import model_schemas

if TYPE_CHECKING:
    from ..config import Settings
    from ..host.context import HostContext


def fingerprint(ctx: HostContext) -> tuple[Any, ...]:
    """What the document depends on: changes whenever a publish, route or unpublish does."""
    entries = ctx.registry.entries(published_only=False)
    return (
        *(
            (e.name, e.endpoint, tuple(e.versions), tuple(e.routes.items()), e.published)
            for e in entries
        ),
        ctx.settings.auth_enabled,
    )


class OpenAPICache:
    """The document for a host, rebuilt when :func:`fingerprint` changes."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self._key: tuple[Any, ...] | None = None
        self._doc: dict[str, Any] = {}
        self.builds = 0

    def document(self) -> dict[str, Any]:
        key = fingerprint(self.ctx)
        if key != self._key:
            self._doc = build_openapi(self.ctx)
            self._key = key
            self.builds += 1
        return self._doc


def build_openapi(ctx: HostContext) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a host's API as it is now."""
    root = ctx.settings.api_root.rstrip("/")
    auth = ctx.settings.auth_enabled
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
    for entry in sorted(ctx.registry.entries(), key=lambda e: e.endpoint):
        mv = entry.versions.get(entry.active or "") or entry.latest()
        names = model_schemas(mv, schemas)
        builder = ModelPaths(ctx, entry, mv, names, auth)
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
        "servers": [{"url": "/"}],  # the serverless adapter puts its stage prefix here
        "tags": [
            *tags,
            {"name": "host", "description": "The host itself"},
            {"name": "deploy", "description": "Code streaming and versions (the deploy token)"},
        ],
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": copy.deepcopy(DEPLOY_SECURITY)},
    }
    _document_limits(ctx.settings, root, paths)
    if auth:
        doc["components"]["securitySchemes"]["bearerAuth"] = {"type": "http", "scheme": "bearer"}
        doc["security"] = [{"bearerAuth": []}]
    return doc


def _document_limits(s: Settings, root: str, paths: dict[str, Any]) -> None:
    """The answers of the SQL limits, the request limits and the scopes (http/limits.py)."""
    extra: dict[str, set[int]] = {f"{root}/sql": {408} | ({429} if s.sql_concurrency else set())}
    if s.sse_max:
        extra[f"{root}/events"] = {503}
    if s.deploy_rate:
        for path in paths:
            if path == f"{root}/deploy" or path.startswith(f"{root}/deploy/"):
                extra.setdefault(path, set()).add(429)
    if s.auth_enabled and s.auth_scopes:
        for path in paths:
            if path.startswith(f"{root}/models/") or path in {
                f"{root}/sql",
                f"{root}/events",
                f"{root}/config",
            }:
                extra.setdefault(path, set()).add(403)
    for path, statuses in extra.items():
        for op in paths.get(path, {}).values():
            if isinstance(op, dict) and "responses" in op:
                for status, answer in error_responses(statuses).items():
                    op["responses"].setdefault(status, answer)


__all__ = ["IF_MATCH_PATTERN", "OpenAPICache", "build_openapi", "fingerprint"]
