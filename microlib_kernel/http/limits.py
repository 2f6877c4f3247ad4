"""Limits per client: concurrent SQL queries, deploy requests per minute, open streams.

Pure ASGI middleware in front of the routes (after access control, so an authenticated
caller is counted by name, an anonymous one by address):

* ``POST /sql``: at most ``sql_concurrency`` queries of one client at once; one more
  answers ``429`` with ``Retry-After``. Queries also have a time limit (SQL limits), so
  a slot is always given back;
* the deploy routes: at most ``deploy_rate`` requests per minute per client (a token
  bucket that refills continuously; a burst of ``deploy_rate`` is allowed); ``429``
  with the seconds until the next one is allowed. Counted before the deploy token is
  checked, which also slows down guessing it;
* ``GET /events``: at most ``sse_max`` streams open on the host at once; one more
  answers ``503`` with ``Retry-After``.

Zero turns a limit off.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..errors import MicrolibError, ServiceUnavailable, TooManyRequests
from .auth import PRINCIPAL_KEY, Principal
from .errors import microlib_error

if TYPE_CHECKING:
    from ..config import Settings

ASGIApp = Any
#: Forget a client's deploy bucket once it has been full this long (bounded memory).
_IDLE = 600.0


def client_key(scope: dict[str, Any]) -> str:
    """Who a limit counts: the authenticated principal, else the client's address."""
    principal = scope.get(PRINCIPAL_KEY)
    if isinstance(principal, Principal) and principal.authenticated:
        return principal.name
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:?"


class TokenBucket:
    """``rate`` requests per minute per key, with a burst of ``rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for ``key``: 0 when allowed, else seconds until one is there."""
        now = time.monotonic() if now is None else now
        per_second = self.rate / 60.0
        tokens, at = self._buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - at) * per_second)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            self._forget_idle(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / per_second

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) > 1000:
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < _IDLE}


class RequestLimits:
    """ASGI middleware enforcing the limits above for one host."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        s = settings
        self.root = s.api_root.rstrip("/")
        self.sql_concurrency = s.sql_concurrency
        self.sse_max = s.sse_max
        self.deploys = TokenBucket(s.deploy_rate) if s.deploy_rate > 0 else None
        self.sql_running: dict[str, int] = {}
        self.streams = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(self.root + "/"):
            await self.app(scope, receive, send)
            return
        rest = path[len(self.root) + 1 :]
        method = scope["method"]
        try:
            if rest == "sql" and method == "POST" and self.sql_concurrency > 0:
                await self._sql(scope, receive, send)
            elif rest == "events" and method == "GET" and self.sse_max > 0:
                await self._stream(scope, receive, send)
            elif (rest == "deploy" or rest.startswith("deploy/")) and self.deploys:
                wait = self.deploys.take(client_key(scope))
                if wait:
                    raise TooManyRequests(
                        f"more than {self.deploys.rate} deploy requests a minute from this "
                        f"client; retry in {wait:.0f} s",
                        retry_after=wait,
                    )
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        except (TooManyRequests, ServiceUnavailable) as exc:
            await self._refuse(exc, scope, receive, send)

    async def _sql(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        key = client_key(scope)
        if self.sql_running.get(key, 0) >= self.sql_concurrency:
            raise TooManyRequests(
                f"this client already runs {self.sql_concurrency} SQL queries; wait for one "
                "to finish",
                retry_after=1.0,
            )
        self.sql_running[key] = self.sql_running.get(key, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.sql_running[key] - 1
            if left:
                self.sql_running[key] = left
            else:
                del self.sql_running[key]

    async def _stream(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.streams >= self.sse_max:
            raise ServiceUnavailable(
                f"{self.sse_max} event streams are open on this host (sse_max); retry later",
                retry_after=5,
            )
        self.streams += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.streams -= 1

    @staticmethod
    async def _refuse(exc: MicrolibError, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = await microlib_error(Request(scope), exc)
        await response(scope, receive, send)
