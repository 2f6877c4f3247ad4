"""``create_app(api)``: the Starlette application of a host's API.

The app is built once per server from the host's :class:`~microlib_kernel.host.api.HostApi`
(its context and the services behind the routes, never the ``Host`` itself). Its routes
look models up in the registry at
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
    from ..host.api import HostApi


def create_app(api: HostApi, *, keepalive: float = 15.0) -> Starlette:
    """The HTTP API of a host (DESIGN.md §4), under its settings' ``api_root``.

    Args:
        api: what the routes use of the host (``Host.api``).
        keepalive: seconds between keep-alive comments on a quiet ``/events`` stream.

    Raises:
        MicrolibError: the auth settings cannot work (a JWT key that does not load...).

    Returns:
        A Starlette app. ``app.state.stopping`` (an ``asyncio.Event``) ends the event
        streams when set, so a server can stop without waiting for them.
    """
    settings = api.ctx.settings
    root = settings.api_root.rstrip("/")
    stopping = asyncio.Event()
    # Built here, not in the middleware (Starlette builds that on the first request), so
    # bad auth settings fail when serving starts.
    authenticator = Authenticator(settings, api.deploy_token)
    openapi = OpenAPICache(api.ctx)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.document())

    models = ModelRoutes(api)
    routes: list[BaseRoute] = [
        *models.routes(),
        *AdminRoutes(api, stopping, keepalive).routes(),
        *DeployRoutes(api).routes(),
        Route(f"{root}/openapi.json", openapi_json, methods=["GET"]),
        *docs_routes(root),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(DrainingConnections, state=api.ctx.state),
            Middleware(InternalErrors),
            Middleware(AccessControl, settings=settings, auth=authenticator),
            Middleware(RequestLimits, settings=settings),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.api = api
    app.state.api_root = root
    app.state.stopping = stopping
    app.state.lists = models.lists  # the list cache (its hits and misses)
    app.state.openapi = openapi
    return app
