"""Errors become responses here, and only here.

Every error body has one shape, ``{"error": message, ...details}``, plus ``error_type``
(the class name in :mod:`microlib_kernel.errors`, so clients can raise the same class).
A :class:`~microlib_kernel.errors.MicrolibError` answers with its own ``status``. Any
other exception is a bug (ours, or in user code such as a hook): it answers ``500
{"error": "internal error", "error_id": ...}`` and the traceback is logged under that
id, never sent.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..domain.ids import new_id
from ..errors import DatasourceUnavailable, MicrolibError, PayloadTooLarge, Unauthorized
from .responses import JSONResponse

log = logging.getLogger("microlib_kernel.http")

#: Where a model route records the version serving the request (for error responses too).
VERSION_KEY = "microlib.version"
VERSION_HEADER = "X-Microlib-Version"


def _headers(scope: Scope) -> dict[str, str]:
    version = scope.get(VERSION_KEY)
    return {VERSION_HEADER: version} if version else {}


async def microlib_error(request: Request, exc: Exception) -> Response:
    """A :class:`MicrolibError` as ``exc.status`` with ``exc.to_dict()``."""
    assert isinstance(exc, MicrolibError)
    body: dict[str, Any] = {**exc.to_dict(), "error_type": type(exc).__name__}
    headers = _headers(request.scope)
    if exc.status >= 500:
        # Expected failures (a datasource down, a port's adapter failing) still get an
        # id, so an operator can find the log line a user reports.
        body["error_id"] = error_id = new_id()
        log.warning(
            "%s %s answered %s (error id %s): %s",
            request.method,
            request.url.path,
            exc.status,
            error_id,
            exc.message,
        )
    retry_after = exc.details.get("retry_after")
    if isinstance(retry_after, int | float):
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="microlib"'
    elif isinstance(exc, PayloadTooLarge):
        headers["Connection"] = "close"  # the rest of the body was not read
    elif isinstance(exc, DatasourceUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(body, exc.status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route 404, 405) in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = (
            f"no route {request.method} {request.url.path}; the API is under "
            f"{request.app.state.api_root or '/'} (docs: {request.app.state.api_root}/docs)"
        )
        kind = "NotFound"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        kind = "MethodNotAllowed"
    else:
        message, kind = str(exc.detail), "HTTPError"
    headers = {**(exc.headers or {}), **_headers(request.scope)}
    return JSONResponse({"error": message, "error_type": kind}, exc.status_code, headers)


EXCEPTION_HANDLERS = {MicrolibError: microlib_error, HTTPException: http_error}


class InternalErrors:
    """ASGI middleware: an unexpected exception becomes a generic 500 with an error id.

    Starlette's own ``Exception`` handler re-raises after answering (so the server logs
    the traceback a second time, without the id); this one logs once, with the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return  # nobody is listening any more
        except Exception as exc:
            error_id = new_id()
            log.error(
                "internal error %s on %s %s",
                error_id,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            response = JSONResponse(
                {"error": "internal error", "error_type": "InternalError", "error_id": error_id},
                500,
                _headers(scope),
            )
            try:
                await response(scope, receive, send)
            except RuntimeError:
                pass  # the response had already started (a stream broke): just end it
