"""The model routes: ``/models/{endpoint}[/{id}[/...]]``.

Every request resolves its model through the host's live registry, once, at its start:
publishing, republishing or unpublishing never rebuilds the app, and a request finishes
on the version it started with. The serving version is named in ``X-Microlib-Version``
on every response of these routes (errors included, once a version was chosen); a
request may pin one with the same header.

Handlers run on the host loop (the server does), so they call the repository directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.ids import check_id, new_id
from ..domain.query import build_query, parse_filters
from ..errors import BadQuery, NotFound, ValidationFailed
from .auth import Principal, principal_of
from .errors import VERSION_HEADER, VERSION_KEY
from .headers import header
from .list_cache import ListCache
from .responses import JSONResponse, jsonable, read_object

if TYPE_CHECKING:
    from ..domain.model import Model
    from ..host.api import HostApi
    from ..host.registry import ModelEntry, ModelVersion
    from ..host.repository import Repository

#: List parameters that are not filters (``count`` is Aegis's spelling of ``__count``).
_PAGING = ("__limit", "__offset", "__order", "__count", "count")
REASON_HEADER = "X-Microlib-Relation-Reason"

Endpoint = Callable[[Request], Awaitable[Response]]


def parse_if_match(value: str | None) -> int | None:
    """``If-Match: 3`` (or ``"3"``, ``W/"3"``) -> ``3``; ``*`` or absent -> ``None``.

    Raises:
        ValidationFailed: not a revision number.
    """
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return None
    text = text.removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 18:
        raise ValidationFailed(
            f"If-Match must be the revision the change is based on (a number), got {value!r}",
            errors=[{"type": "int_parsing", "loc": ["header", "If-Match"], "msg": "not a number"}],
        )
    return int(text)


def _header_safe(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode().replace("\r", " ").replace("\n", " ")


def _route(
    path: str, allow: Callable[[Request], set[str]] | None = None, **handlers: Endpoint
) -> Route:
    """One route per path, answering 405 with exactly the methods allowed.

    Args:
        path: the path pattern.
        allow: the methods allowed for a request's path (default: every handler's);
            it narrows what a path with a variable name allows (a command is PATCH).
        handlers: a handler per method.
    """
    if "GET" in handlers:
        handlers["HEAD"] = handlers["GET"]
    methods = set(handlers)

    async def endpoint(request: Request) -> Response:
        handler = handlers.get(request.method)
        allowed = methods if allow is None else allow(request)
        if handler is None or request.method not in allowed:
            order = ("GET", "HEAD", "POST", "PATCH", "DELETE")
            raise HTTPException(405, headers={"Allow": ", ".join(m for m in order if m in allowed)})
        return await handler(request)

    # An ASGI app (not a function) makes Starlette route every method here, so
    # endpoint() decides the 405 and its Allow header.
    return Route(path, _AnyMethod(request_response(endpoint)))


class _AnyMethod:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class ModelRoutes:
    """The handlers of the model routes for one host."""

    def __init__(self, api: HostApi) -> None:
        self.api = api
        self.ctx = api.ctx
        self.root = api.ctx.settings.api_root.rstrip("/")
        self.limit = api.ctx.settings.body_limit
        self.lists = ListCache()

    def routes(self) -> list[Route]:
        base = f"{self.root}/models/{{endpoint}}"
        return [
            _route(f"{base}/{{id}}", GET=self.get_one, PATCH=self.update, DELETE=self.delete),
            _route(base, GET=self.list, POST=self.create),
            _route(f"{base}/{{id}}/{{name}}", self._allowed, GET=self.related, PATCH=self.command),
            _route(f"{base}/{{id}}/ports/{{port}}", POST=self.port),
        ]

    # -- resolution ----------------------------------------------------------------------

    def _principal(self, request: Request) -> Principal:
        return principal_of(request)  # found by the access middleware (http/access.py)

    def _entry(self, request: Request) -> tuple[ModelEntry, Repository]:
        endpoint = request.path_params["endpoint"]
        entry = self.ctx.registry.by_endpoint(endpoint)
        if entry is None:
            served = ", ".join(e.endpoint for e in self.ctx.registry.entries()) or "none"
            raise NotFound(
                f"no model serves endpoint {endpoint!r}; endpoints: {served}", endpoint=endpoint
            )
        return entry, self.ctx.repository(entry.endpoint)

    def _version(self, request: Request, entry: ModelEntry, id: str | None) -> ModelVersion:
        """The pinned version, else the routed one (sticky per id)."""
        pinned = header(request.scope, b"x-microlib-version")
        mv = entry.get(pinned.strip()) if pinned is not None else entry.pick(id)
        request.scope[VERSION_KEY] = mv.version
        return mv

    def _answer(
        self, mv: ModelVersion, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        return JSONResponse(body, status, {VERSION_HEADER: mv.version, **(headers or {})})

    def _answer_json(
        self,
        mv: ModelVersion,
        body: bytes,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An answer whose body is JSON text already (an instance's, a cached list's)."""
        return Response(
            body, status, {VERSION_HEADER: mv.version, **(headers or {})}, JSONResponse.media_type
        )

    def _answer_one(
        self,
        mv: ModelVersion,
        instance: Model,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> Response:
        # The instance's own serializer writes the body: no dict of its fields is made
        # and encoded again (~5% of a GET by id at c=32 went to that dict).
        return self._answer_json(mv, instance.json_bytes(), status, headers)

    # -- collection ----------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        """``POST /models/{endpoint}``: 201 (or 200 for an idempotent replay)."""
        self._principal(request)
        entry, repo = self._entry(request)
        key = header(request.scope, b"idempotency-key")
        id = new_id() if key is None else key.strip()
        mv = self._version(request, entry, id)
        if key is not None:
            check_id(id)
        data = await read_object(request, self.limit, f"{mv.name} data")
        instance, created = await repo.create(mv, data, id=id, fresh=key is None)
        location = f"{self.root}/models/{entry.endpoint}/{instance.id}"
        status = 201 if created else 200
        return self._answer_one(mv, instance, status, {"Location": location})

    async def list(self, request: Request) -> Response:
        """``GET /models/{endpoint}``: a list, or a count with ``__count``/``count``."""
        self._principal(request)
        entry, repo = self._entry(request)
        mv = self._version(request, entry, None)
        raw_query = request.scope["query_string"].decode("latin-1")
        stamp = self.lists.stamp(repo)
        if stamp is not None:
            body = self.lists.get(mv, raw_query, stamp)
            if body is not None:
                return self._answer_json(mv, body)
        filters: dict[str, str] = {}
        paging: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            target = paging if key in _PAGING else filters
            if key in target:
                raise BadQuery(f"query parameter {key!r} is given twice", parameter=key)
            target[key] = value
        if "__count" in paging and "count" in paging and paging["__count"] != paging["count"]:
            raise BadQuery("give __count or count, not both", parameter="count")
        count = paging.get("__count", paging.get("count"))
        if count is not None:
            return self._answer(mv, await self._count(mv, repo, filters, count))
        query = build_query(
            mv.cls,
            filters,
            limit=paging.get("__limit"),
            offset=paging.get("__offset", 0),
            order=paging.get("__order"),
        )
        instances = await repo.list(mv, query)
        body = b"[" + b",".join([i.json_bytes() for i in instances]) + b"]"
        if stamp is not None:
            self.lists.put(mv, raw_query, stamp, body)
        return self._answer_json(mv, body)

    async def _count(
        self, mv: ModelVersion, repo: Repository, filters: dict[str, str], count: str
    ) -> dict[str, Any]:
        if count == "all":
            return {"total": await repo.count(parse_filters(mv.cls, filters))}
        field, sep, value = count.partition(":")
        if not sep or not field:
            raise BadQuery(
                f"__count must be 'all' or 'field:value', got {count!r}", parameter="__count"
            )
        if field in filters and filters[field] != value:
            raise BadQuery(f"{field} is filtered on twice, with different values", field=field)
        parsed = parse_filters(mv.cls, {**filters, field: value})
        # {"field": value, "total": n}; for a field named "total" the count wins.
        return {field: parsed[field], "total": await repo.count(parsed)}

    # -- one instance -------------------------------------------------------------------

    async def get_one(self, request: Request) -> Response:
        """``GET /models/{endpoint}/{id}`` (``?relation=r``, ``?command=c``)."""
        principal = self._principal(request)
        entry, repo = self._entry(request)
        id = request.path_params["id"]
        mv = self._version(request, entry, id)
        instance = await repo.get(mv, id)
        if not request.scope["query_string"]:  # the common case: skip parsing a query
            return self._answer_one(mv, instance)
        params = request.query_params
        relation, command = params.get("relation"), params.get("command")
        if relation is not None and command is not None:
            raise BadQuery("give ?relation= or ?command=, not both")
        if command is not None:
            result = await self.api.commands.run(mv, instance, command, {}, principal.acl_roles)
            return self._answer(mv, jsonable(result))
        if relation is not None:
            found = await self.api.relations.lookup(mv, instance, relation)
            body = {mv.spec.event_prefix: instance.to_json(), relation: jsonable(found.value)}
            if found.reason is not None:
                body["reason"] = found.reason
            return self._answer(mv, body)
        return self._answer_one(mv, instance)

    async def update(self, request: Request) -> Response:
        """``PATCH /models/{endpoint}/{id}``: 200, 409 on a stale ``If-Match``."""
        self._principal(request)
        entry, repo = self._entry(request)
        id = request.path_params["id"]
        mv = self._version(request, entry, id)
        expect = parse_if_match(request.headers.get("if-match"))
        changes = await read_object(request, self.limit, f"{mv.name} changes")
        updated = await repo.update(mv, id, changes, expect_revision=expect)
        return self._answer_one(mv, updated)

    async def delete(self, request: Request) -> Response:
        """``DELETE /models/{endpoint}/{id}``: 200 with the deleted model; 400 on a veto."""
        self._principal(request)
        entry, repo = self._entry(request)
        id = request.path_params["id"]
        mv = self._version(request, entry, id)
        deleted = await repo.delete(mv, id)
        return self._answer_one(mv, deleted)

    # -- relations, commands, ports ----------------------------------------------------------

    def _allowed(self, request: Request) -> set[str]:
        """``/{id}/{name}``: GET for a relation, PATCH for a command (both if both)."""
        entry = self.ctx.registry.by_endpoint(request.path_params["endpoint"])
        name = request.path_params["name"]
        if entry is None or entry.active is None:
            return {"GET", "HEAD", "PATCH"}
        spec = entry.versions[entry.active].spec
        allowed = {"GET", "HEAD"} if name in spec.relations else set()
        if name in spec.commands:
            allowed.add("PATCH")
        return allowed or {"GET", "HEAD", "PATCH"}

    async def related(self, request: Request) -> Response:
        """``GET /models/{endpoint}/{id}/{relation}``: the related model(s)."""
        self._principal(request)
        entry, repo = self._entry(request)
        id, name = request.path_params["id"], request.path_params["name"]
        mv = self._version(request, entry, id)
        instance = await repo.get(mv, id)
        found = await self.api.relations.lookup(mv, instance, name)
        headers = {} if found.reason is None else {REASON_HEADER: _header_safe(found.reason)}
        return self._answer(mv, jsonable(found.value), headers=headers)

    async def command(self, request: Request) -> Response:
        """``PATCH /models/{endpoint}/{id}/{command}``: the command's result."""
        principal = self._principal(request)
        entry, repo = self._entry(request)
        id, name = request.path_params["id"], request.path_params["name"]
        mv = self._version(request, entry, id)
        kwargs = await read_object(request, self.limit, f"arguments of {name}", default={})
        instance = await repo.get(mv, id)
        result = await self.api.commands.run(mv, instance, name, kwargs, principal.acl_roles)
        return self._answer(mv, jsonable(result))

    async def port(self, request: Request) -> Response:
        """``POST /models/{endpoint}/{id}/ports/{port}``: the model after the port ran."""
        self._principal(request)
        entry, repo = self._entry(request)
        id, name = request.path_params["id"], request.path_params["port"]
        mv = self._version(request, entry, id)
        kwargs = await read_object(request, self.limit, f"arguments of port {name}", default={})
        instance = await repo.get(mv, id)
        result = await self.api.ports.call_inbound(mv, instance, name, kwargs)
        return self._answer(mv, jsonable(result))
