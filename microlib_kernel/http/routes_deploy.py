"""The deploy routes: code streaming and version control over HTTP (DESIGN.md §4, §7, §12).

* ``POST /deploy`` ``{"kind", "name", "source", "version"?}`` -> ``201 {"published": [...]}``
* ``GET /deploy`` -> ``{"deployments": [{"time", "kind", "names", "versions", "who"}]}``
* ``POST /deploy/{model}/rollback`` ``{"version"?}`` -> the model's ``/config`` entry
* ``PUT /deploy/{model}/routes`` ``{"weights": {"1.0.0": 90, "1.0.1": 10}}`` -> the entry
* ``DELETE /deploy/{model}`` (unpublish) -> the entry

Executing code is the point of ``POST /deploy``, so every one of these routes needs
``Authorization: Bearer <deploy token>`` (compared in constant time). The token is
checked before the body is read: a request without it runs nothing. The deploy token
is not an API token: these routes do not go through :mod:`.auth`, so they work the
same whether API auth is on or off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import DeployRefused, MicrolibError, Unauthorized
from ..host.deploy import KINDS
from ..host.tokens import token_matches
from .responses import JSONResponse, read_object

if TYPE_CHECKING:
    from ..host.api import HostApi

_DEPLOY_KEYS = {"kind", "name", "source", "version"}


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, if the header has that form."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def who(request: Request) -> str:
    """How a deploy over HTTP is signed in the log: ``"http 127.0.0.1"``."""
    client = request.client
    return f"http {client.host}" if client is not None else "http"


class DeployRoutes:
    """Handlers of the deploy routes for one host."""

    def __init__(self, api: HostApi) -> None:
        self.api = api
        self.rollout = api.rollout
        self.root = api.ctx.settings.api_root.rstrip("/")
        self.limit = api.ctx.settings.body_limit

    def routes(self) -> list[Route]:
        base = f"{self.root}/deploy"
        return [
            Route(base, self.deploy, methods=["POST"]),
            Route(base, self.deployments, methods=["GET"]),
            Route(f"{base}/{{model}}/rollback", self.rollback, methods=["POST"]),
            Route(f"{base}/{{model}}/routes", self.routes_, methods=["PUT"]),
            Route(f"{base}/{{model}}", self.unpublish, methods=["DELETE"]),
        ]

    def _authorize(self, request: Request) -> None:
        """Refuse (401) a missing or wrong deploy token, before anything else happens."""
        given = bearer_token(request)
        if given is None:
            raise Unauthorized(
                "the deploy routes need the deploy token: send Authorization: Bearer <token> "
                "(MICROLIB_DEPLOY_TOKEN, or .microlib/deploy-token where the host runs)"
            )
        if not token_matches(given, self.api.deploy_token()):
            raise Unauthorized("wrong deploy token")

    async def _body(self, request: Request, what: str, *, optional: bool = False) -> dict[str, Any]:
        """The JSON object body; every malformed body is a refused deploy (400)."""
        try:
            body: dict[str, Any] = await read_object(
                request, self.limit, what, **({"default": {}} if optional else {})
            )
        except MicrolibError as exc:
            if exc.status != 400:
                raise  # 413 stays 413
            raise DeployRefused(exc.message, **exc.details) from None
        return body

    # -- code streaming ------------------------------------------------------------------

    async def deploy(self, request: Request) -> Response:
        """``POST /deploy``: run a source and publish what it defines (all or nothing)."""
        self._authorize(request)
        body = await self._body(request, "the deploy request")
        unknown = sorted(set(body) - _DEPLOY_KEYS)
        if unknown:
            raise DeployRefused(
                f"unknown key(s) {', '.join(unknown)}; a deploy is "
                '{"kind", "name", "source", "version"}'
            )
        kind = body.get("kind", "model")
        name, source, version = body.get("name"), body.get("source"), body.get("version")
        if kind not in KINDS:
            raise DeployRefused(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(source, str) or not source.strip():
            raise DeployRefused("source must be the non-empty text of the source to run")
        if name is not None and not isinstance(name, str):
            raise DeployRefused(f"name must be a string, got {type(name).__name__}")
        if version is not None and not isinstance(version, str):
            raise DeployRefused(
                f"version must be a string like 1.2.0, got {type(version).__name__}"
            )
        try:
            published = await self.rollout.publish(
                source, kind=kind, name=name, version=version, who=who(request)
            )
        except MicrolibError as exc:
            if exc.status == 400 and not isinstance(exc, DeployRefused):
                raise DeployRefused(exc.message, **exc.details) from None
            raise
        return JSONResponse({"published": [p.to_json() for p in published]}, 201)

    async def deployments(self, request: Request) -> Response:
        """``GET /deploy``: the deployment log, oldest first."""
        self._authorize(request)
        return JSONResponse({"deployments": [d.to_json() for d in self.rollout.history]})

    # -- versions ------------------------------------------------------------------------

    async def rollback(self, request: Request) -> Response:
        """``POST /deploy/{model}/rollback`` ``{"version"?}``: route everything to it."""
        self._authorize(request)
        body = await self._body(request, "the rollback request", optional=True)
        unknown = sorted(set(body) - {"version"})
        version = body.get("version")
        if unknown or not (version is None or isinstance(version, str)):
            raise DeployRefused('a rollback takes {"version": "X.Y.Z"} or nothing (the one before)')
        entry = await self.rollout.rollback(request.path_params["model"], version, who=who(request))
        return JSONResponse(entry)

    async def routes_(self, request: Request) -> Response:
        """``PUT /deploy/{model}/routes`` ``{"weights": {...}}``: split traffic by weight."""
        self._authorize(request)
        body = await self._body(request, "the routes request")
        weights = body.get("weights")
        if set(body) != {"weights"} or not isinstance(weights, dict) or not weights:
            raise DeployRefused('routes take {"weights": {"1.0.0": 90, "1.0.1": 10}}')
        for version, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise DeployRefused(f"the weight of {version} must be a number, got {weight!r}")
        entry = await self.rollout.route(request.path_params["model"], weights, who=who(request))
        return JSONResponse(entry)

    async def unpublish(self, request: Request) -> Response:
        """``DELETE /deploy/{model}``: endpoints go away (404); the table and data stay."""
        self._authorize(request)
        entry = await self.rollout.unpublish(request.path_params["model"], who=who(request))
        return JSONResponse(self.api.config.entry(entry))
