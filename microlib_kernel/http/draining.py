"""Draining: while a host shuts down, every response asks its client to reconnect.

``Connection: close`` makes keep-alive clients open a fresh connection for their next
request, so none of them is caught with a request on a connection the server is about
to close; a load balancer polling ``/health`` (503 ``draining``) stops sending new work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..host.context import HostState

ASGIApp = Any


class DrainingConnections:
    """Pure ASGI middleware: adds ``Connection: close`` while the host drains."""

    def __init__(self, app: ASGIApp, state: HostState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.state.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
