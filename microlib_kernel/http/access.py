"""Access control for the API: who is calling (auth) and what they may touch (scopes).

Pure ASGI middleware, run once per request before any route. It finds the
:class:`~.auth.Principal` (401 when auth is on and the token is missing or invalid),
leaves it in the request scope for the routes, and checks the route's scope against
``auth_scopes`` (403). Open routes: ``/health``, ``/openapi.json``, ``/docs`` and the
deploy routes (they check the deploy token themselves).

Scopes (``auth_scopes``, ``"scope=role1+role2,..."``), checked only when auth is on:

* ``read:<endpoint>`` / ``write:<endpoint>``: a model's reads (GET) and its writes
  (POST, PATCH, DELETE, commands, ports; ``GET ?command=`` counts as a write);
  ``read:*`` / ``write:*`` apply to models without their own rule;
* ``sql``, ``events``, ``config``: ``POST /sql``, ``GET /events``, ``GET /config``.

A scope without a rule is open to every authenticated caller; with a rule, the caller
needs one of its roles. Command ACLs are checked on top, by the command runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..errors import Forbidden, MicrolibError
from .auth import PRINCIPAL_KEY, Authenticator
from .errors import microlib_error

if TYPE_CHECKING:
    from ..config import Settings

ASGIApp = Any
_OPEN = ("health", "openapi.json", "docs", "deploy")
_READS = {"GET", "HEAD"}


def route_scope(rest: str, method: str, query: str = "") -> str | None:
    """The scope a request needs: ``rest`` is its path below the API root, no slash.

    ``None`` for routes that no scope guards (an unknown path answers 404 later).
    """
    parts = rest.split("/")
    if parts[0] == "models" and len(parts) > 1 and parts[1]:
        write = method not in _READS or "command=" in query
        return f"{'write' if write else 'read'}:{parts[1]}"
    if len(parts) == 1 and parts[0] in ("sql", "events", "config"):
        return parts[0]
    return None


def check_scope(
    scopes: Mapping[str, Iterable[str]], scope: str | None, roles: Iterable[str]
) -> None:
    """Refuse (403) a caller without one of the roles ``scopes`` names for ``scope``.

    Raises:
        Forbidden: the scope has a rule and the caller holds none of its roles.
    """
    if scope is None or not scopes:
        return
    rule = scopes.get(scope)
    if rule is None and ":" in scope:
        rule = scopes.get(scope.split(":", 1)[0] + ":*")
    if rule is None:
        return
    needed = tuple(rule)
    if not set(needed) & set(roles):
        raise Forbidden(
            f"{scope} needs one of the roles {', '.join(needed) or '(none configured)'}",
            scope=scope,
            roles=list(needed),
        )


class AccessControl:
    """ASGI middleware: authenticate every API request, then check its scope.

    Args:
        app: the app it wraps.
        settings: the host's settings (they choose the auth mode and scopes).
        auth: the authenticator, built by ``create_app`` (so that bad auth settings
            fail when serving starts: Starlette builds middleware on the first request).
    """

    def __init__(self, app: ASGIApp, settings: Settings, auth: Authenticator) -> None:
        self.app = app
        self.settings = settings
        self.auth = auth
        self.prefix = settings.api_root.rstrip("/") + "/"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        rest = path[len(self.prefix) :]
        if rest.split("/", 1)[0] in _OPEN:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await self.auth.principal(request)
            if self.auth.enabled and not principal.admin:
                query = scope.get("query_string", b"").decode("latin-1")
                check_scope(
                    self.settings.auth_scopes,
                    route_scope(rest, scope["method"], query),
                    principal.roles,
                )
        except MicrolibError as exc:
            response = await microlib_error(request, exc)
            await response(scope, receive, send)
            return
        scope[PRINCIPAL_KEY] = principal
        await self.app(scope, receive, send)
