"""JWT auth over real HTTP: a JWKS served by the test, every way a token can be wrong."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.http_support import ITEMS, Served, serve_host
from tests.jwt_support import AUDIENCE, ISSUER, JwksServer, SigningKey, jwks_server, unsigned

KEY = SigningKey.rsa("k1")
EC_KEY = SigningKey.ec("k-ec")
SCOPES = "read:*=viewer+clerk,write:*=clerk,write:customers=admin,sql=analyst"


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with jwks_server(KEY, EC_KEY) as server:
        yield server


@pytest.fixture
def secured(tmp_path: Path, jwks: JwksServer) -> Iterator[Served]:
    s = serve_host(
        tmp_path,
        jwt_jwks_url=jwks.url,
        jwt_audience=AUDIENCE,
        jwt_issuer=ISSUER,
        auth_scopes=SCOPES,
    )
    yield s
    s.host.close()


def call(served: Served, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
    headers = kw.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=served.api, timeout=10) as c:
        return c.request(method, path, headers=headers, **kw)


def test_valid_tokens_get_in_with_the_roles_of_their_claim(secured: Served) -> None:
    clerk = KEY.token(["clerk"])
    r = call(secured, "POST", "/models/orders", clerk, json={"items": ITEMS})
    assert r.status_code == 201, r.text
    order = r.json()
    # An EC key of the same JWKS works too.
    r = call(secured, "GET", f"/models/orders/{order['id']}", EC_KEY.token(["viewer"]))
    assert r.status_code == 200
    # Command ACLs see the token's roles: summary needs "read".
    path = f"/models/orders/{order['id']}/summary"
    assert call(secured, "PATCH", path, clerk).status_code == 403
    assert call(secured, "PATCH", path, KEY.token(["clerk", "read"])).status_code == 200


def test_missing_and_bad_tokens_are_401(secured: Served) -> None:
    r = call(secured, "GET", "/models/orders", None)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    now = int(time.time())
    wrong_key = SigningKey.rsa("k1")  # same kid, another key
    other_issuer_key = SigningKey.rsa("nobody-knows-me")
    cases = {
        "expired": KEY.token(["clerk"], exp=now - 120, iat=now - 600),
        "not valid yet": KEY.token(["clerk"], nbf=now + 600),
        "audience": KEY.token(["clerk"], aud="another-api"),
        "issuer": KEY.token(["clerk"], iss="https://evil.test"),
        "signature": wrong_key.token(["clerk"]),
        "no key": other_issuer_key.token(["clerk"]),
        "exp": KEY.token(["clerk"], exp=None),
        "not accepted": unsigned({"sub": "x", "aud": AUDIENCE, "iss": ISSUER, "exp": now + 60}),
        "not a JWT": "garbage",
    }
    for reason, token in cases.items():
        r = call(secured, "GET", "/models/orders", token)
        assert r.status_code == 401, (reason, r.text)
        assert reason in r.json()["error"], (reason, r.json())
        assert r.json()["error_type"] == "Unauthorized"


def test_algorithm_confusion_is_refused(secured: Served) -> None:
    """An HS256 token whose secret is the issuer's public key (PEM) must not verify."""
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    claims = {"sub": "mallory", "aud": AUDIENCE, "iss": ISSUER, "exp": int(time.time()) + 60}
    claims["roles"] = ["clerk"]

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    import hashlib
    import hmac

    signing_input = f"{b64(header)}.{b64(claims)}"
    mac = hmac.new(KEY.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    r = call(secured, "GET", "/models/orders", forged)
    assert r.status_code == 401 and "HS256" in r.json()["error"]
    # An RS256 header on the EC key's kid is refused too (alg must match the key type).
    wrong = jwt.encode({**claims}, KEY.private, algorithm="RS256", headers={"kid": EC_KEY.kid})
    r = call(secured, "GET", "/models/orders", wrong)
    assert r.status_code == 401 and "key type" in r.json()["error"]


def test_roles_header_is_ignored_once_auth_is_on(secured: Served) -> None:
    r = call(secured, "GET", "/models/orders", None, headers={"X-Microlib-Roles": "clerk"})
    assert r.status_code == 401
    order = call(secured, "POST", "/models/orders", KEY.token(["clerk"]), json={"items": ITEMS})
    path = f"/models/orders/{order.json()['id']}/summary"
    r = call(secured, "PATCH", path, KEY.token(["clerk"]), headers={"X-Microlib-Roles": "read"})
    assert r.status_code == 403


def test_scopes_map_roles_onto_reads_writes_and_routes(secured: Served) -> None:
    viewer, clerk, analyst = KEY.token(["viewer"]), KEY.token(["clerk"]), KEY.token(["analyst"])
    assert call(secured, "GET", "/models/orders", viewer).status_code == 200
    r = call(secured, "POST", "/models/orders", viewer, json={"items": ITEMS})
    assert r.status_code == 403 and "write:orders" in r.json()["error"]
    order = call(secured, "POST", "/models/orders", clerk, json={"items": ITEMS}).json()
    assert call(secured, "DELETE", f"/models/orders/{order['id']}", viewer).status_code == 403
    # write:customers has its own rule, over write:*.
    r = call(secured, "POST", "/models/customers", clerk, json={"name": "Ada"})
    assert r.status_code == 403
    r = call(secured, "POST", "/models/customers", KEY.token(["admin"]), json={"name": "Ada"})
    assert r.status_code != 403
    # A GET that runs a command is a write.
    r = call(secured, "GET", f"/models/orders/{order['id']}?command=summary", viewer)
    assert r.status_code == 403
    assert call(secured, "POST", "/sql", clerk, json={"sql": "SELECT 1"}).status_code == 403
    assert call(secured, "POST", "/sql", analyst, json={"sql": "SELECT 1"}).status_code == 200
    # Unscoped routes are open to any valid token; /health to anyone.
    assert call(secured, "GET", "/config", analyst).status_code == 200
    assert call(secured, "GET", "/health", None).status_code == 200


def test_key_rotation_refetches_on_an_unknown_kid(secured: Served, jwks: JwksServer) -> None:
    assert call(secured, "GET", "/models/orders", KEY.token(["viewer"])).status_code == 200
    fetched = jwks.fetches
    new = SigningKey.rsa("k2")
    jwks.keys = [new]  # the issuer rotates: k1 retired, k2 in
    assert call(secured, "GET", "/models/orders", new.token(["viewer"])).status_code == 200
    assert jwks.fetches == fetched + 1
    # Made-up kids do not make the host hammer the issuer.
    for i in range(5):
        made_up = SigningKey("x" + str(i), "RS256", new.private)
        assert call(secured, "GET", "/models/orders", made_up.token(["viewer"])).status_code == 401
    assert jwks.fetches == fetched + 1


def test_static_key_and_a_dotted_roles_claim(tmp_path: Path) -> None:
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(KEY.public_pem())
    s = serve_host(tmp_path, jwt_key=str(pem), jwt_roles_claim="realm_access.roles")
    try:
        token = KEY.token(None, aud=None, realm_access={"roles": ["read"]})
        order = call(s, "POST", "/models/orders", token, json={"items": ITEMS}).json()
        r = call(s, "PATCH", f"/models/orders/{order['id']}/summary", token)
        assert r.status_code == 200, r.text
        assert call(s, "GET", "/models/orders", EC_KEY.token(["read"])).status_code == 401
        doc = call(s, "GET", "/openapi.json", None).json()
        assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    finally:
        s.host.close()


def test_unreachable_jwks_is_401_not_500(tmp_path: Path) -> None:
    s = serve_host(tmp_path, jwt_jwks_url="http://127.0.0.1:9/jwks.json")
    try:
        r = call(s, "GET", "/models/orders", KEY.token(["viewer"]))
        assert r.status_code == 401 and "cannot fetch the JWKS" in r.json()["error"]
    finally:
        s.host.close()


def test_unknown_kids_are_not_fetched_on_every_request(tmp_path: Path, jwks: JwksServer) -> None:
    s = serve_host(tmp_path, jwt_jwks_url=jwks.url, jwt_audience=AUDIENCE)
    try:
        jwks.keys = []
        for _ in range(5):
            r = call(s, "GET", "/models/orders", KEY.token(["viewer"]))
            assert r.status_code == 401
        assert jwks.fetches == 2  # the first fetch, then one retry for the unknown kid
    finally:
        s.host.close()


def test_an_issuer_that_is_down_is_not_waited_for_on_every_request(tmp_path: Path) -> None:
    s = serve_host(tmp_path, jwt_jwks_url="http://127.0.0.1:9/jwks.json")
    try:
        start = time.monotonic()
        for _ in range(5):
            r = call(s, "GET", "/models/orders", KEY.token(["viewer"]))
            assert r.status_code == 401 and "cannot fetch the JWKS" in r.json()["error"]
        assert time.monotonic() - start < 5
    finally:
        s.host.close()


def test_a_remembered_token_still_expires(tmp_path: Path) -> None:
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(KEY.public_pem())
    s = serve_host(tmp_path, jwt_key=str(pem), jwt_leeway=0)
    try:
        token = KEY.token(["viewer"], aud=None, exp=int(time.time()) + 2)
        for _ in range(3):  # verified once, then remembered
            assert call(s, "GET", "/models/orders", token).status_code == 200
        time.sleep(
            max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"] - time.time())
            + 0.2
        )
        r = call(s, "GET", "/models/orders", token)
        assert r.status_code == 401 and "expired" in r.json()["error"]
    finally:
        s.host.close()


def test_bad_jwt_settings_fail_when_serving_starts(tmp_path: Path) -> None:
    from microlib_kernel.errors import MicrolibError

    with pytest.raises(MicrolibError, match="cannot read jwt_key"):
        serve_host(tmp_path, jwt_key="missing.pem")
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(KEY.public_pem())
    with pytest.raises(MicrolibError, match="no asymmetric algorithm"):
        serve_host(tmp_path, jwt_key=str(pem), jwt_algorithms="HS256,none")
    (tmp_path / "junk.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(MicrolibError, match="not a PEM public key"):
        serve_host(tmp_path, jwt_key=str(tmp_path / "junk.pem"))
