"""Who is calling: the request's :class:`Principal` and its roles.

Auth is off by default (local development) and on once a setting names how tokens are
checked:

* **off**: every request is let in and its roles come from ``X-Microlib-Roles: a,b``
  (trimmed, empty items dropped);
* **static tokens** (``auth_tokens``, ``MICROLIB_AUTH_TOKENS="tok1=admin+write,tok2=read"``):
  the token names the roles;
* **JWT** (``jwt_jwks_url`` or ``jwt_key``): a signed token, verified by
  :class:`~.jwt_auth.JwtVerifier`; the roles come from a claim.

Once on, every API request needs ``Authorization: Bearer <token>`` and
``X-Microlib-Roles`` is ignored; a missing or invalid token is 401. The
:class:`Authenticator` runs once per request (``http/access.py``) and leaves the
principal in the request scope, where routes read it (:func:`principal_of`).

The deploy routes use their own token (the deploy token) and do not go through here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..errors import MicrolibError, Unauthorized
from .headers import header

if TYPE_CHECKING:
    from ..config import Settings

ROLES_HEADER = "x-microlib-roles"
#: Where the access middleware leaves a request's :class:`Principal`.
PRINCIPAL_KEY = "microlib.principal"


@dataclass(frozen=True)
class Principal:
    """The caller of a request.

    Attributes:
        roles: the caller's roles (command ACLs check them).
        name: who it is, for records: ``"anonymous"`` when auth is off, else
            ``"token:<first 8 hex digits of the token's SHA-256>"`` (never the token).
        authenticated: whether a token proved it.
        admin: the deploy token proved it: every role, every scope (that token can
            already deploy code that reads anything).
    """

    roles: tuple[str, ...] = ()
    name: str = "anonymous"
    authenticated: bool = False
    admin: bool = False

    @property
    def acl_roles(self) -> tuple[str, ...] | None:
        """The roles command ACLs check (``None``: every role, for the deploy token)."""
        return None if self.admin else self.roles


_ROLES_HEADER_RAW = ROLES_HEADER.encode("latin-1")
_ANONYMOUS = Principal()  # frozen: one for every request without roles while auth is off


def parse_roles(header: str | None) -> tuple[str, ...]:
    """``" a, b ,,c"`` -> ``("a", "b", "c")``."""
    if not header:
        return ()
    return tuple(r.strip() for r in header.split(",") if r.strip())


def authenticate(request: Request, tokens: Mapping[str, tuple[str, ...]]) -> Principal:
    """The principal of ``request`` under the ``tokens`` setting (``token -> roles``).

    Raises:
        Unauthorized: auth is on and the bearer token is missing or unknown.
    """
    if not tokens:
        return Principal(parse_roles(request.headers.get(ROLES_HEADER)))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("this host needs an API token: send Authorization: Bearer <token>")
    given = token.encode()
    found: tuple[str, ...] | None = None
    # Compare with every token, in constant time each, so timing tells nothing.
    for known, roles in tokens.items():
        if hmac.compare_digest(known.encode(), given) and found is None:
            found = tuple(roles)
    if found is None:
        raise Unauthorized("unknown API token")
    digest = hashlib.sha256(given).hexdigest()[:8]
    return Principal(found, f"token:{digest}", True)


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>``, if the header has that form."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authenticator:
    """Finds the principal of a request under a host's settings (every mode above).

    Args:
        settings: the host's settings.
        deploy_token: gives the host's deploy token (accepted as an all-roles principal);
            called only when auth is on and a token came, as it may create the token.

    Raises:
        MicrolibError: JWT auth is configured but cannot work (PyJWT missing, a bad key).
    """

    def __init__(
        self, settings: Settings, deploy_token: Callable[[], str | None] | None = None
    ) -> None:
        self.settings = settings
        self.deploy_token = deploy_token
        self.enabled = settings.auth_enabled
        self.jwt: Any = None
        if settings.jwt_enabled:
            try:
                from .jwt_auth import JwtVerifier
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise MicrolibError(
                    "JWT auth needs PyJWT: pip install 'microlib-kernel[jwt]'"
                ) from exc
            self.jwt = JwtVerifier(settings)

    async def principal(self, request: Request) -> Principal:
        """The caller of ``request``.

        Raises:
            Unauthorized: auth is on and the token is missing or not valid.
        """
        if not self.enabled:
            roles = header(request.scope, _ROLES_HEADER_RAW)
            return _ANONYMOUS if roles is None else Principal(parse_roles(roles))
        token = bearer(request.headers)
        if token is None:
            raise Unauthorized("this host needs an API token: send Authorization: Bearer <token>")
        deploy = self.deploy_token() if self.deploy_token is not None else None
        if deploy and hmac.compare_digest(token.encode(), deploy.encode()):
            return Principal((), "deploy-token", True, admin=True)
        if self.jwt is not None and (token.count(".") == 2 or not self.settings.auth_tokens):
            subject, roles = await self.jwt.verify(token)
            return Principal(roles, f"jwt:{subject}", True)
        return authenticate(request, self.settings.auth_tokens)


def principal_of(request: Request) -> Principal:
    """The principal the access middleware found for ``request``.

    Raises:
        Unauthorized: the request did not go through the middleware (never let in).
    """
    found = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise Unauthorized("this request was not authenticated")
    return found
