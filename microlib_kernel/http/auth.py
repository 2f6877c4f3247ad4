"""Who is calling: the request's :class:`Principal` and its roles.

Two modes, chosen by the host's ``auth_tokens`` setting (``MICROLIB_AUTH_TOKENS``,
``"tok1=admin+write,tok2=read"``):

* **off** (no tokens, the default for local development): every request is let in and
  its roles come from ``X-Microlib-Roles: a,b`` (trimmed, empty items dropped);
* **on**: every API request needs ``Authorization: Bearer <token>``; the token names
  the roles, and ``X-Microlib-Roles`` is ignored. A missing or unknown token is 401.

The deploy routes use their own token (the deploy token) and do not go through here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request

from ..errors import Unauthorized

ROLES_HEADER = "x-microlib-roles"


@dataclass(frozen=True)
class Principal:
    """The caller of a request.

    Attributes:
        roles: the caller's roles (command ACLs check them).
        name: who it is, for records: ``"anonymous"`` when auth is off, else
            ``"token:<first 8 hex digits of the token's SHA-256>"`` (never the token).
        authenticated: whether a token proved it.
    """

    roles: tuple[str, ...] = ()
    name: str = "anonymous"
    authenticated: bool = False


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
