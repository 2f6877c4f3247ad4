"""Bearer JWTs, verified against a JWKS URL or a static public key (PyJWT).

What a token must be to get in:

* signed with an asymmetric algorithm from ``jwt_algorithms`` (RSA, RSA-PSS, ECDSA or
  EdDSA). ``alg: none`` and the HMAC algorithms are never accepted, and the header's
  ``alg`` must belong to the key's type (an RSA key only verifies ``RS*``/``PS*``), so
  a public key can never be used as an HMAC secret (algorithm confusion);
* signed by the key its ``kid`` names in the JWKS (fetched over HTTP(S) and cached
  for ``jwks_cache_seconds``; an unknown ``kid`` fetches the set again at most once
  every :data:`REFETCH_SECONDS`, so key rotation works and a flood of made-up ``kid``
  values does not flood the issuer), or by the static key;
* carrying ``exp`` in the future and ``nbf`` (when present) in the past, give or take
  ``jwt_leeway`` seconds, and the configured ``aud`` and ``iss``.

The roles are read from the claim ``jwt_roles_claim`` (a dotted path, a list or a
space-separated string).

A token that verified is remembered for up to :data:`CACHE_SECONDS` (never past its
``exp``), so a client sending the same token on every request pays the signature check
once: PyJWT's decoding costs ~0.2 ms a token here, several times a whole request.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

from ..errors import MicrolibError, Unauthorized

if TYPE_CHECKING:
    from ..config import Settings

#: Least seconds between two JWKS fetches caused by unknown ``kid`` values.
REFETCH_SECONDS = 10.0
#: Longest a verified token is remembered (and most tokens remembered).
CACHE_SECONDS = 60.0
CACHE_SIZE = 10_000
#: Which algorithms each JWK key type can verify.
FAMILIES = {
    "RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    "EC": {"ES256", "ES384", "ES512", "ES256K"},
    "OKP": {"EdDSA"},
}
ASYMMETRIC = set().union(*FAMILIES.values())


class JwtVerifier:
    """Verifies bearer JWTs for one host's settings.

    Args:
        settings: the host's settings (``jwt_*``, ``jwks_*``).

    Raises:
        MicrolibError: the static key cannot be read, or no usable algorithm is set.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        wanted = {a.strip() for a in settings.jwt_algorithms.split(",") if a.strip()}
        self.algorithms = wanted & ASYMMETRIC
        if not self.algorithms:
            raise MicrolibError(
                f"jwt_algorithms {settings.jwt_algorithms!r} has no asymmetric algorithm; "
                f"choose from {', '.join(sorted(ASYMMETRIC))}"
            )
        self._static = _load_static(settings) if settings.jwt_key else None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = float("-inf")  # monotonic time of the last successful fetch
        self._missed = float("-inf")  # ... of the last fetch an unknown kid caused
        self._error = ""  # why the last fetch failed
        self._lock = asyncio.Lock()
        # token -> (valid until, monotonic; subject; roles)
        self._verified: dict[str, tuple[float, str, tuple[str, ...]]] = {}

    async def verify(self, token: str) -> tuple[str, tuple[str, ...]]:
        """``(subject, roles)`` of a valid token.

        Raises:
            Unauthorized: the token is malformed, badly signed, expired, not yet valid,
                for another audience or issuer, or its key is unknown.
        """
        now = time.monotonic()
        known = self._verified.get(token)
        if known is not None and now < known[0]:
            return known[1], known[2]
        subject, roles, exp = await self._verify(token)
        if len(self._verified) >= CACHE_SIZE:
            self._verified = {k: v for k, v in self._verified.items() if v[0] > now}
            if len(self._verified) >= CACHE_SIZE:
                self._verified.clear()
        until = min(now + CACHE_SECONDS, now + (exp - time.time()))
        self._verified[token] = (until, subject, roles)
        return subject, roles

    async def _verify(self, token: str) -> tuple[str, tuple[str, ...], float]:
        """:meth:`verify` without the cache; also returns the token's ``exp``."""
        header = _header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthorized(
                f"JWT algorithm {alg!r} is not accepted; accepted: "
                + ", ".join(sorted(self.algorithms))
            )
        key = self._static if self._static is not None else await self._jwk(header.get("kid"))
        kty = str(key.key_type) if isinstance(key, jwt.PyJWK) else _kty(key)
        if alg not in FAMILIES.get(kty, set()):
            raise Unauthorized(f"JWT algorithm {alg} does not match the key type {kty}")
        verifying = key.key if isinstance(key, jwt.PyJWK) else key
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                verifying,
                algorithms=[alg],
                audience=s.jwt_audience or None,
                issuer=s.jwt_issuer or None,
                leeway=s.jwt_leeway,
                options={"require": ["exp"], "verify_aud": bool(s.jwt_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the JWT has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the JWT is not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the JWT is for another audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the JWT comes from another issuer (iss)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the JWT has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the JWT signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid JWT: {exc}") from None
        subject = claims.get("sub")
        name = str(subject) if subject is not None else "?"
        return name, roles_of(claims, s.jwt_roles_claim), float(claims["exp"])

    async def _jwk(self, kid: Any) -> jwt.PyJWK:
        """The JWKS key ``kid`` names (fetching the set when stale or the kid is unknown)."""
        if self._needs_fetch(kid):
            async with self._lock:
                # Another request may have fetched while this one waited.
                if self._needs_fetch(kid):
                    if self._fresh():
                        self._missed = time.monotonic()  # a fetch caused by an unknown kid
                    await self._fetch()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))  # a single key needs no kid
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized(self._error or f"no key {kid!r} in the issuer's JWKS")
        return key

    def _fresh(self) -> bool:
        return time.monotonic() - self._fetched <= self.settings.jwks_cache_seconds

    def _needs_fetch(self, kid: Any) -> bool:
        if not self._fresh():
            return True
        unknown = kid not in self._keys and not (kid is None and len(self._keys) == 1)
        return unknown and time.monotonic() - self._missed > REFETCH_SECONDS

    async def _fetch(self) -> None:
        import httpx

        url = self.settings.jwt_jwks_url or ""
        from ..client import tls_verify

        verify = tls_verify(self.settings.jwks_cafile or True)
        try:
            async with httpx.AsyncClient(timeout=5, verify=verify) as client:
                response = await client.get(url)
                response.raise_for_status()
                document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # Keep serving with the keys we have, and try again in REFETCH_SECONDS
            # rather than on every request (an issuer that is down is not hammered).
            self._fetched = time.monotonic() - self.settings.jwks_cache_seconds + REFETCH_SECONDS
            self._missed = time.monotonic()
            self._error = f"cannot fetch the JWKS to verify the token: {exc}"
            if self._keys:
                return
            raise Unauthorized(self._error) from None
        self._error = ""
        keys: dict[str, jwt.PyJWK] = {}
        for item in document.get("keys", []) if isinstance(document, dict) else []:
            try:
                key = jwt.PyJWK(item)
            except jwt.PyJWTError:
                continue  # a key type or algorithm we do not use
            if key.key_type in FAMILIES and item.get("use", "sig") == "sig":
                keys[str(item.get("kid", ""))] = key
        self._keys = keys
        self._fetched = time.monotonic()


def _header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWT (unverified), or 401 if it is not one."""
    import base64

    head, dot, _ = token.partition(".")
    try:
        if not dot or len(head) > 4096:
            raise ValueError("not a JWT")
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        if not isinstance(header, dict):
            raise ValueError("not a JWT")
    except (ValueError, TypeError):
        raise Unauthorized("the bearer token is not a JWT") from None
    return header


def roles_of(claims: dict[str, Any], claim: str) -> tuple[str, ...]:
    """The roles in ``claims`` at the dotted path ``claim``: a list, or words in a string."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if isinstance(v, str | int) and str(v).strip())
    return ()


def _load_static(settings: Settings) -> Any:
    """The static public key: PEM text, a path to a PEM file, or a JWK (JSON)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    text = settings.jwt_key or ""
    if "-----BEGIN" not in text and not text.lstrip().startswith("{"):
        path = settings.path(text)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise MicrolibError(f"cannot read jwt_key {path}: {exc.strerror or exc}") from None
    try:
        if text.lstrip().startswith("{"):
            return jwt.PyJWK(json.loads(text))
        return load_pem_public_key(text.encode())
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise MicrolibError(f"jwt_key is not a PEM public key or a JWK: {exc}") from None


def _kty(key: Any) -> str:
    """The JWK key type of a ``cryptography`` public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP"
    return "?"
