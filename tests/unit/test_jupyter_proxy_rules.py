"""What the proxy changes on the way through (pure functions, no server)."""

from __future__ import annotations

import json

from microlib_kernel.jupyter_server import proxy
from microlib_kernel.jupyter_server.registry import (
    HostRegistration,
    ServerRegistration,
    kernel_id_from_connection_file,
    valid_kernel_id,
)

PREFIX = "/user/alice/microlib/proxy/k1"
HOST = "http://127.0.0.1:8707"


def test_jupyter_credentials_never_reach_a_host() -> None:
    sent = proxy.request_headers(
        [
            ("Cookie", "_xsrf=1; username-x=2"),
            ("Authorization", "token jupyter-token"),
            ("X-XSRFToken", "1"),
            ("Referer", "http://lab/"),
            ("Host", "lab.example.org"),
            ("Connection", "keep-alive"),
            ("Content-Length", "12"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "k"),
            ("X-Microlib-Roles", "read"),
            ("X-Microlib-Version", "1.0.0"),
        ],
        prefix=PREFIX,
    )
    assert sent == [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "k"),
        ("X-Microlib-Roles", "read"),
        ("X-Microlib-Version", "1.0.0"),
        ("X-Forwarded-Prefix", PREFIX),
    ]


def test_the_deploy_token_wins_over_a_browser_supplied_host_token() -> None:
    own = proxy.request_headers([("X-Microlib-Authorization", "Bearer api")], prefix=PREFIX)
    assert ("Authorization", "Bearer api") in own
    deploy = proxy.request_headers(
        [("X-Microlib-Authorization", "Bearer api"), ("Authorization", "token j")],
        prefix=PREFIX,
        deploy_token="d",
    )
    assert [v for k, v in deploy if k == "Authorization"] == ["Bearer d"]


def test_deploy_paths() -> None:
    root = "/microlib/api"
    for path in (
        "/microlib/api/deploy",
        "/microlib/api/deploy/Order",
        "/microlib/api/deploy/O/rollback",
    ):
        assert proxy.is_deploy_path(path, root), path
    for path in (
        "/microlib/api/deployments",
        "/microlib/api/models/deploy",
        "/deploy",
        "/microlib/apideploy",
    ):
        assert not proxy.is_deploy_path(path, root), path
    assert proxy.is_deploy_path("/deploy/x", "/")


def test_responses_lose_cookies_and_hop_headers_and_locations_move_under_the_proxy() -> None:
    relayed = proxy.response_headers(
        [
            ("Set-Cookie", "x=1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "10"),
            ("Server", "uvicorn"),
            ("Content-Type", "application/json"),
            ("X-Microlib-Version", "1.0.1"),
            ("Location", "/microlib/api/models/orders/1"),
        ],
        host_url=HOST,
        prefix=PREFIX,
    )
    assert relayed == [
        ("Content-Type", "application/json"),
        ("X-Microlib-Version", "1.0.1"),
        ("Location", f"{PREFIX}/microlib/api/models/orders/1"),
    ]
    assert proxy.rewrite_location(f"{HOST}/microlib/api/docs", host_url=HOST, prefix=PREFIX) == (
        f"{PREFIX}/microlib/api/docs"
    )
    for kept in ("https://example.org/x", "//evil.example/x", "relative/path"):
        assert proxy.rewrite_location(kept, host_url=HOST, prefix=PREFIX) == kept


def test_only_jupyters_own_token_is_dropped_from_the_query() -> None:
    assert proxy.strip_query_token("status=A&token=jt", "jt") == "status=A"
    assert proxy.strip_query_token("token=model-field", "jt") == "token=model-field"
    assert proxy.strip_query_token("a=1&b=2", "jt") == "a=1&b=2"
    assert proxy.strip_query_token("", "jt") == ""


def test_openapi_servers_point_at_the_proxy() -> None:
    doc = {"openapi": "3.1.0", "servers": [{"url": "/"}], "paths": {}}
    out = json.loads(proxy.rewrite_openapi(json.dumps(doc).encode(), PREFIX) or b"")
    assert out["servers"] == [{"url": PREFIX, "description": "through Jupyter"}]
    assert proxy.rewrite_openapi(b"<html>", PREFIX) is None
    assert proxy.rewrite_openapi(b"[1]", PREFIX) is None


def test_the_docs_page_loads_its_assets_through_the_proxy() -> None:
    page = proxy.docs_page(PREFIX, "/microlib/api")
    assert f'href="{PREFIX}/microlib/api/docs/static/swagger-ui/swagger-ui.css"' in page
    assert f'url: "{PREFIX}/microlib/api/openapi.json"' in page


def test_host_paths() -> None:
    assert proxy.host_path_of(f"{PREFIX}/microlib/api/x%20y", PREFIX) == "/microlib/api/x%20y"
    assert proxy.host_path_of(PREFIX, PREFIX) == "/"


def test_kernel_ids_and_registrations_are_validated() -> None:
    assert kernel_id_from_connection_file("/run/kernel-3f1e-77.json") == "3f1e-77"
    for bad in ("/run/kernel-.json", "/run/other.json", "/run/kernel-a/b.json", "kernel-...json"):
        assert kernel_id_from_connection_file(bad) is None, bad
    for bad in ("", "..", "a/b", "127.0.0.1:80", "a b", "-x"):
        assert not valid_kernel_id(bad), bad
    good = {"kernel_id": "k1", "url": "http://127.0.0.1:1/", "api_root": "microlib/api/", "pid": 7}
    reg = HostRegistration.from_dict(good)
    assert reg is not None and (reg.url, reg.api_root) == ("http://127.0.0.1:1", "/microlib/api")
    for broken in (
        {**good, "url": "https://127.0.0.1:1"},
        {**good, "url": "http://user@127.0.0.1:1"},
        {**good, "url": "http://127.0.0.1:1/path"},
        {**good, "kernel_id": "../x"},
        {**good, "pid": "not a pid"},
        {"url": "http://127.0.0.1:1", "pid": 1},
    ):
        assert HostRegistration.from_dict(broken) is None, broken
    server = ServerRegistration.from_dict({"pid": 5, "base_url": "user/alice"})
    assert server is not None and server.proxy_path("k1") == "/user/alice/microlib/proxy/k1"
    assert ServerRegistration.from_dict({"pid": 5, "base_url": "/"}).proxy_path("k") == (  # type: ignore[union-attr]
        "/microlib/proxy/k"
    )
