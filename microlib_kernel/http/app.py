"""``create_app(host)``: the Starlette application of a host's API.

The app is built once per server. Its routes look models up in ``host.registry`` at
request time, so publishing, republishing and unpublishing change what it serves
without rebuilding it, and ``/openapi.json`` is regenerated when the registry changed.
Handlers run on the host loop (the server runs there), so they touch host state
directly.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .access import AccessControl
from .auth import Authenticator
from .docs import docs_routes
from .draining import DrainingConnections
from .errors import EXCEPTION_HANDLERS, InternalErrors
from .limits import RequestLimits
from .openapi import OpenAPICache
from .responses import JSONResponse
from .routes_admin import AdminRoutes
from .routes_deploy import DeployRoutes
from .routes_models import ModelRoutes

if TYPE_CHECKING:
    from ..host.host import Host


def create_app(host: Host, *, keepalive: float = 15.0) -> Starlette:
    """The HTTP API of ``host`` (DESIGN.md §4), under ``host.settings.api_root``.

    Args:
        host: the host whose models are served.
        keepalive: seconds between keep-alive comments on a quiet ``/events`` stream.

    Raises:
        MicrolibError: the auth settings cannot work (a JWT key that does not load...).

    Returns:
        A Starlette app. ``app.state.stopping`` (an ``asyncio.Event``) ends the event
        streams when set, so a server can stop without waiting for them.
    """
    root = host.settings.api_root.rstrip("/")
    stopping = asyncio.Event()
    # Built here, not in the middleware (Starlette builds that on the first request), so
    # bad auth settings fail when serving starts.
    authenticator = Authenticator(host.settings, lambda: host.deploy_token)
    openapi = OpenAPICache(host)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.document())

    models = ModelRoutes(host)
    routes: list[BaseRoute] = [
        *models.routes(),
        *AdminRoutes(host, stopping, keepalive).routes(),
        *DeployRoutes(host).routes(),
        Route(f"{root}/openapi.json", openapi_json, methods=["GET"]),
        *docs_routes(root),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(DrainingConnections, host=host),
            Middleware(InternalErrors),
            Middleware(AccessControl, host=host, auth=authenticator),
            Middleware(RequestLimits, host=host),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.host = host
    app.state.api_root = root
    app.state.stopping = stopping
    app.state.lists = models.lists  # the list cache (its hits and misses)
    app.state.openapi = openapi
    return app
