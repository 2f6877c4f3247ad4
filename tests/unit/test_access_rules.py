"""Scopes, roles claims and client keys: the pure rules of access control."""

from __future__ import annotations

import pytest

from microlib_kernel.errors import Forbidden, Unauthorized
from microlib_kernel.http.access import check_scope, route_scope
from microlib_kernel.http.auth import PRINCIPAL_KEY, Principal
from microlib_kernel.http.jwt_auth import _header, roles_of
from microlib_kernel.http.limits import client_key


@pytest.mark.parametrize(
    ("rest", "method", "query", "scope"),
    [
        ("models/orders", "GET", "", "read:orders"),
        ("models/orders/1", "HEAD", "", "read:orders"),
        ("models/orders/1/customer", "GET", "", "read:orders"),
        ("models/orders/1", "GET", "command=summary", "write:orders"),
        ("models/orders", "POST", "", "write:orders"),
        ("models/orders/1", "DELETE", "", "write:orders"),
        ("models/orders/1/ports/pay", "POST", "", "write:orders"),
        ("sql", "POST", "", "sql"),
        ("events", "GET", "pattern=*", "events"),
        ("config", "GET", "", "config"),
        ("models", "GET", "", None),
        ("nowhere", "GET", "", None),
    ],
)
def test_route_scope(rest: str, method: str, query: str, scope: str | None) -> None:
    assert route_scope(rest, method, query) == scope


def test_a_models_own_rule_wins_over_the_star_rule() -> None:
    scopes = {"read:*": ("viewer",), "read:secrets": ("auditor",), "sql": ("analyst",)}
    check_scope(scopes, "read:orders", ["viewer"])
    check_scope(scopes, "read:secrets", ["auditor"])
    with pytest.raises(Forbidden, match="read:secrets needs one of the roles auditor"):
        check_scope(scopes, "read:secrets", ["viewer"])
    check_scope(scopes, "write:orders", [])  # no rule: open to any valid token
    check_scope({}, "sql", [])
    with pytest.raises(Forbidden):
        check_scope(scopes, "sql", ["viewer"])


def test_roles_claims() -> None:
    claims = {"roles": ["a", " b ", ""], "scope": "x y", "realm_access": {"roles": ["k"]}}
    assert roles_of(claims, "roles") == ("a", "b")
    assert roles_of(claims, "scope") == ("x", "y")
    assert roles_of(claims, "realm_access.roles") == ("k",)
    assert roles_of(claims, "missing.path") == ()
    assert roles_of({"roles": {"not": "a list"}}, "roles") == ()


@pytest.mark.parametrize("token", ["", "abc", "!!!.x.y", "e30", "W10.x.y", "a" * 5000 + ".b.c"])
def test_malformed_jwt_headers_are_401(token: str) -> None:
    with pytest.raises(Unauthorized, match="not a JWT"):
        _header(token)


def test_limits_count_principals_else_addresses() -> None:
    jwt_user = Principal(("a",), "jwt:alice", True)
    assert client_key({PRINCIPAL_KEY: jwt_user, "client": ("10.0.0.1", 5)}) == "jwt:alice"
    anonymous = Principal(("a",))
    assert client_key({PRINCIPAL_KEY: anonymous, "client": ("10.0.0.1", 5)}) == "addr:10.0.0.1"
    assert client_key({}) == "addr:?"
    assert Principal((), "deploy-token", True, admin=True).acl_roles is None
    assert jwt_user.acl_roles == ("a",)
