"""The host's own routes: ``/config``, ``/health``, ``/events`` (SSE) and ``/sql``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..errors import ValidationFailed
from ..version import __version__
from .auth import principal_of
from .responses import JSONResponse, read_object

if TYPE_CHECKING:
    from ..domain.events import Event
    from ..host.api import HostApi

_SQL_KEYS = {"sql", "params"}


def sse_frame(event: Event) -> bytes:
    """One Server-Sent Events frame: ``id``, ``event`` (the name) and ``data`` (JSON)."""
    name = event.name.replace("\r", " ").replace("\n", " ")
    data = to_json(event.to_dict(), fallback=str).decode()
    return f"id: {event.id}\nevent: {name}\ndata: {data}\n\n".encode()


class AdminRoutes:
    """Handlers of the host-level routes.

    Args:
        api: what the routes use of the host.
        stopping: set when the server stops, so event streams end instead of holding
            the shutdown up.
        keepalive: seconds between SSE keep-alive comments on a quiet stream.
    """

    def __init__(self, api: HostApi, stopping: asyncio.Event, keepalive: float = 15.0) -> None:
        self.api = api
        self.ctx = api.ctx
        self.stopping = stopping
        self.keepalive = keepalive
        self.root = api.ctx.settings.api_root.rstrip("/")

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.root}/config", self.config, methods=["GET"]),
            Route(f"{self.root}/health", self.health, methods=["GET"]),
            Route(f"{self.root}/events", self.events, methods=["GET"]),
            Route(f"{self.root}/sql", self.sql, methods=["POST"]),
        ]

    def _authenticate(self, request: Request) -> None:
        principal_of(request)  # the access middleware authenticated it (http/access.py)

    async def config(self, request: Request) -> Response:
        """``GET /config``: every published model with versions, routes, schema..."""
        self._authenticate(request)
        return JSONResponse(self.api.config.all())

    async def health(self, request: Request) -> Response:
        """``GET /health``: 200 ``{"status": "ok", ...}``; 503 while starting or draining.

        Open without a token, for load balancers and orchestrators.
        """
        state, rollout = self.ctx.state, self.api.rollout
        status = (
            "closed"
            if state.closed
            else "draining"
            if state.draining
            else "starting"
            if state.starting
            else "ok"
        )
        body: dict[str, Any] = {
            "status": status,
            "version": __version__,
            "models": len(self.ctx.registry.entries()),
        }
        report = rollout.restore_report
        if report.failed or report.notes:
            # Versions that did not come back after a restart: the others serve.
            body["restore"] = {"failed": report.failed, "notes": report.notes}
        if rollout.cluster is not None:
            # Still 200 when the bus is down: the host serves correctly by reading
            # through its cache; the body says so.
            body["bus"] = rollout.cluster.describe()
        if status != "ok":
            body["error"] = f"the host is {status}"
            return JSONResponse(body, 503, {"Retry-After": "1"})
        return JSONResponse(body)

    async def events(self, request: Request) -> Response:
        """``GET /events?pattern=order.*``: domain events as Server-Sent Events."""
        self._authenticate(request)
        pattern = request.query_params.get("pattern") or "*"
        if len(pattern) > 200:
            raise ValidationFailed("pattern is longer than 200 characters")
        return StreamingResponse(
            self._stream(pattern),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, pattern: str) -> AsyncIterator[bytes]:
        async with self.ctx.events.stream(pattern) as stream:
            # The subscription exists from here on: say so, so a client knows that
            # events published after this line reach it.
            yield f": subscribed to {pattern.replace(chr(10), ' ')}\n\n".encode()
            stop = asyncio.ensure_future(self.stopping.wait())
            nxt: asyncio.Future[Event | None] | None = None
            dropped = 0
            try:
                while not stop.done():
                    nxt = asyncio.ensure_future(stream.next(self.keepalive))
                    await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done():
                        break
                    event = nxt.result()
                    if stream.dropped != dropped:
                        yield f": dropped {stream.dropped - dropped} events\n\n".encode()
                        dropped = stream.dropped
                    yield b": keep-alive\n\n" if event is None else sse_frame(event)
            finally:
                # Whether the client left (the generator is cancelled) or the server
                # stops, no waiter may outlive the stream.
                stop.cancel()
                if nxt is not None:
                    nxt.cancel()

    async def sql(self, request: Request) -> Response:
        """``POST /sql {"sql", "params"}``: read-only SQL -> ``{"columns", "rows"}``."""
        self._authenticate(request)
        body = await read_object(request, self.ctx.settings.body_limit, "the SQL request")
        unknown = sorted(set(body) - _SQL_KEYS)
        query, params = body.get("sql"), body.get("params")
        if unknown or not isinstance(query, str):
            raise ValidationFailed(
                'the body must be {"sql": "SELECT ...", "params": {...} or [...]}'
                + (f"; unknown keys: {', '.join(unknown)}" if unknown else ""),
                errors=[{"type": "sql_request", "loc": ["body"], "msg": "sql must be a string"}],
            )
        if params is not None and not isinstance(params, dict | list):
            raise ValidationFailed(
                "params must be an object ($name) or a list (?)",
                errors=[{"type": "sql_params", "loc": ["body", "params"], "msg": "bad params"}],
            )
        result = await self.api.queries.run_async(query, params, capped=True)
        return JSONResponse(result.to_json())
