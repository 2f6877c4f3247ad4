"""The Jupyter server extension on a real Jupyter server (pytest-jupyter), proxying to
real hosts: a ``Host`` serving on port 0 with a registration file, as a kernel's is.

The server's base URL is ``/a%40b/`` (pytest-jupyter's default), so every path is
also checked with a quoted base URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel.jupyter_server.registry import HOST_PREFIX, TOKEN_ENV
from tests.http_support import Served, serve_host
from tests.jupyter_server_support import *  # noqa: F403
from tests.jupyter_server_support import EchoServer, register

KID = "3f1e6c1a-0b5e-4c1e-9a51-6a0c1b2d3e4f"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "host").mkdir()
    s = serve_host(tmp_path / "host", broken=False)
    try:
        yield s
    finally:
        s.host.close()


@pytest.fixture
def runtime(jp_serverapp: Any) -> Path:
    return Path(jp_serverapp.runtime_dir)


@pytest.fixture
def run(jp_asyncio_loop: asyncio.AbstractEventLoop) -> Any:
    return jp_asyncio_loop.run_until_complete


def token_of(served: Served) -> str:
    return (served.host.settings.home_path / "deploy-token").read_text().strip()


def registered(served: Served, runtime: Path, kernel_id: str = KID) -> None:
    register(
        runtime,
        kernel_id,
        served.url,
        token_file=str(served.host.settings.home_path / "deploy-token"),
    )


def call(run: Any, jp_fetch: Any, *parts: str, **kwargs: Any) -> Any:
    kwargs.setdefault("raise_error", False)
    return run(jp_fetch(*parts, **kwargs))


def body(response: Any) -> Any:
    return json.loads(response.body)


# -- GET /microlib/hosts ---------------------------------------------------------------


def test_hosts_lists_live_hosts_with_models_counts_and_proxied_urls(
    served: Served, runtime: Path, run: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    registered(served, runtime)
    order = served.models["Order"]
    for total in (1.0, 2.0):
        run_host(served, order.create(items=[{"sku": "a"}], total=total))

    response = call(run, jp_fetch, "microlib", "hosts")
    assert response.code == 200
    data = body(response)
    assert data["base_url"] == jp_base_url
    [host] = data["hosts"]
    assert host["kernel_id"] == KID and host["status"] == "ok", host
    assert host["url"] == served.url and host["pid"] == os.getpid()
    assert host["api"] == f"microlib/proxy/{KID}/microlib/api"
    assert host["docs"] == f"microlib/proxy/{KID}/microlib/api/docs"
    assert host["events"] == f"microlib/proxy/{KID}/microlib/api/events"
    assert host["deploy"] is True
    assert host["notebook"] is None  # a host of no kernel of this server
    models = {m["name"]: m for m in host["models"]}
    assert set(models) == {"Order", "Customer", "Counter"}
    assert models["Order"] == {
        "name": "Order",
        "endpoint": "orders",
        "active": "1.0.0",
        "published": True,
        "versions": ["1.0.0"],
        "routes": {"1.0.0": 100.0},
        "url": f"microlib/proxy/{KID}/microlib/api/models/orders",
        "count": 2,
    }
    assert models["Customer"]["count"] == 0


def test_hosts_reports_an_unreachable_host_and_drops_stale_ones(
    served: Served, runtime: Path, run: Any, jp_fetch: Any
) -> None:
    registered(served, runtime)
    dead = dead_pid()
    register(runtime, "stale-kernel", "http://127.0.0.1:9", pid=dead)
    # A live process whose host does not answer (port 9 is discard; nothing listens).
    register(runtime, "silent-kernel", "http://127.0.0.1:9")

    hosts = {h["kernel_id"]: h for h in body(call(run, jp_fetch, "microlib", "hosts"))["hosts"]}

    assert set(hosts) == {KID, "silent-kernel"}
    assert hosts["silent-kernel"]["status"] == "unreachable"
    assert "cannot reach the host" in hosts["silent-kernel"]["error"]
    assert hosts["silent-kernel"]["deploy"] is False
    assert not (runtime / f"{HOST_PREFIX}stale-kernel.json").exists()  # cleaned up


def test_hosts_needs_jupyter_authentication(
    served: Served, runtime: Path, run: Any, jp_fetch: Any
) -> None:
    registered(served, runtime)
    response = call(run, jp_fetch, "microlib", "hosts", headers={"Authorization": "token nope"})
    assert response.code == 403


# -- the proxy ---------------------------------------------------------------------------


def test_proxy_relays_every_method_with_bodies_and_headers(
    served: Served, runtime: Path, run: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    registered(served, runtime)
    api = ("microlib", "proxy", KID, "microlib", "api", "models", "orders")
    created = call(
        run,
        jp_fetch,
        *api,
        method="POST",
        body=json.dumps({"items": [{"sku": "a", "price": 2}], "total": 2}),
        headers={"Content-Type": "application/json", "Idempotency-Key": "order-1"},
    )
    assert created.code == 201, created.body
    order = body(created)
    assert order["id"] == "order-1"
    assert created.headers["X-Microlib-Version"] == "1.0.0"
    # The host's Location is moved under the proxy, so the browser can follow it.
    assert created.headers["Location"] == (
        f"{jp_base_url}microlib/proxy/{KID}/microlib/api/models/orders/order-1"
    )
    listed = call(run, jp_fetch, *api, params={"status": "PENDING"})
    assert listed.code == 200 and [o["id"] for o in body(listed)] == ["order-1"]

    patched = call(
        run,
        jp_fetch,
        *api,
        "order-1",
        method="PATCH",
        body=json.dumps({"status": "CANCELED"}),
        headers={"Content-Type": "application/json"},
    )
    assert patched.code == 200 and body(patched)["status"] == "CANCELED"
    invalid = call(
        run, jp_fetch, *api, method="POST", body="{not json", headers={"Content-Type": "x"}
    )
    assert invalid.code == 400 and "error" in body(invalid)  # the host's own error
    deleted = call(run, jp_fetch, *api, "order-1", method="DELETE")
    assert deleted.code == 200 and body(deleted)["id"] == "order-1"
    missing = call(run, jp_fetch, *api, "order-1")
    assert missing.code == 404 and body(missing)["error"]
    assert missing.headers["Content-Security-Policy"].endswith("sandbox")


def test_proxy_streams_server_sent_events_and_stops_when_the_browser_leaves(
    served: Served,
    runtime: Path,
    run: Any,
    jp_serverapp: Any,
    http_server_client: Any,  # starts the server listening on jp_http_port
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict[str, str],
) -> None:
    registered(served, runtime)
    url = (
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}microlib/proxy/{KID}"
        "/microlib/api/events?pattern=order.*"
    )
    extension = jp_serverapp.web_app.settings["microlib_kernel"]
    order = served.models["Order"]

    async def first_event() -> dict[str, Any]:
        async with (
            httpx.AsyncClient(trust_env=False, timeout=20) as client,
            client.stream("GET", url, headers=jp_auth_header) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            # The subscription exists once its comment line arrived.
            assert (await anext(lines)).startswith(": subscribed to order.*")
            assert len(extension.relays) == 1
            created = asyncio.get_running_loop().run_in_executor(
                None, run_host, served, order.create(items=[{"sku": "b"}])
            )
            async for line in lines:
                if line.startswith("data: "):
                    await created
                    return json.loads(line[len("data: ") :])
        raise AssertionError("the stream ended without an event")

    event = run(asyncio.wait_for(first_event(), 20))
    assert event["name"] == "order.created" and event["data"]["items"] == [{"sku": "b"}]

    async def relays_gone() -> None:
        while extension.relays:
            await asyncio.sleep(0.05)

    run(asyncio.wait_for(relays_gone(), 10))  # the browser left: the relay stopped


def test_proxy_serves_the_docs_page_and_openapi_under_its_prefix(
    served: Served, runtime: Path, run: Any, jp_fetch: Any, jp_base_url: str
) -> None:
    registered(served, runtime)
    prefix = f"{jp_base_url}microlib/proxy/{KID}"
    page = call(run, jp_fetch, "microlib", "proxy", KID, "microlib", "api", "docs")
    assert page.code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.body.decode()
    assert f'src="{prefix}/microlib/api/docs/static/swagger-ui/swagger-ui-bundle.js"' in html
    assert f'url: "{prefix}/microlib/api/openapi.json"' in html

    asset = call(
        run,
        jp_fetch,
        "microlib",
        "proxy",
        KID,
        "microlib/api/docs/static/swagger-ui/swagger-ui.css",
    )
    assert asset.code == 200 and asset.headers["Content-Type"].startswith("text/css")

    spec = call(run, jp_fetch, "microlib", "proxy", KID, "microlib", "api", "openapi.json")
    assert spec.code == 200
    document = body(spec)
    assert document["servers"][0]["url"] == prefix  # "Try it out" goes through Jupyter
    assert "/microlib/api/models/orders" in document["paths"]

    redirect = call(
        run, jp_fetch, "microlib", "proxy", KID, "microlib", "api", follow_redirects=False
    )
    assert redirect.code == 307
    assert redirect.headers["Location"] == f"{prefix}/microlib/api/docs"


def test_proxy_refuses_unregistered_kernels_stale_hosts_and_ports(
    served: Served, runtime: Path, run: Any, jp_fetch: Any
) -> None:
    registered(served, runtime)
    port = served.url.rsplit(":", 1)[1]
    for kernel_id in ("unknown-kernel", port):
        response = call(run, jp_fetch, "microlib", "proxy", kernel_id, "microlib", "api", "config")
        assert response.code == 404, kernel_id
        assert body(response) == {"error": f"no microlib host is registered for kernel {kernel_id}"}
    # Nothing that is not a kernel id routes to the proxy: no address, no way out.
    for kernel_id in (f"127.0.0.1:{port}", "..", "%2e%2e"):
        response = call(run, jp_fetch, "microlib", "proxy", kernel_id, "api", "kernels")
        assert response.code == 404, kernel_id

    stale = dead_pid()
    register(runtime, "gone-kernel", served.url, pid=stale)  # the real host, a dead "kernel"
    response = call(run, jp_fetch, "microlib", "proxy", "gone-kernel", "microlib", "api", "config")
    assert response.code == 404
    assert not (runtime / f"{HOST_PREFIX}gone-kernel.json").exists()

    unauthenticated = call(
        run,
        jp_fetch,
        "microlib",
        "proxy",
        KID,
        "microlib",
        "api",
        "config",
        headers={"Authorization": "token wrong"},
        follow_redirects=False,
    )
    assert unauthenticated.code in (302, 403)  # to the login page, or refused


def test_proxy_refuses_cross_origin_requests(
    served: Served, runtime: Path, run: Any, jp_fetch: Any
) -> None:
    registered(served, runtime)
    path = f"microlib/proxy/{KID}/microlib/api/config"
    # A browser: logged in by a cookie (token-authenticated scripts skip origin checks).
    login = call(run, jp_fetch, "api", "status")
    [cookie] = [c.split(";")[0] for c in login.headers.get_list("Set-Cookie") if "username" in c]
    browser = {"Authorization": "", "Cookie": cookie}
    evil = call(run, jp_fetch, path, headers={**browser, "Origin": "http://evil.example"})
    assert evil.code == 404
    same = call(run, jp_fetch, path, headers=browser, follow_redirects=False)
    assert same.code == 200 and "models" in body(same)


def test_proxy_sends_no_jupyter_credentials_and_adds_the_deploy_token_only_to_deploy_routes(
    echo: EchoServer,
    runtime: Path,
    run: Any,
    jp_fetch: Any,
    jp_auth_header: dict[str, str],
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "deploy-token"
    token_file.write_text("s3cret-token\n")
    register(runtime, "echo", echo.url, token_file=str(token_file))
    jupyter_token = jp_auth_header["Authorization"].split()[1]

    plain = body(
        call(
            run,
            jp_fetch,
            "microlib/proxy/echo/microlib/api/models/orders",
            params={"status": "A", "token": jupyter_token},
            headers={"Cookie": "_xsrf=abc; session=xyz", "X-Microlib-Roles": "read"},
        )
    )
    assert plain["path"] == "/microlib/api/models/orders?status=A"  # Jupyter's token dropped
    assert "authorization" not in plain["headers"] and "cookie" not in plain["headers"]
    assert plain["headers"]["x-microlib-roles"] == "read"
    assert plain["headers"]["x-forwarded-prefix"].endswith("/microlib/proxy/echo")

    own = body(
        call(
            run,
            jp_fetch,
            "microlib/proxy/echo/microlib/api/config",
            headers={"X-Microlib-Authorization": "Bearer api-token"},
        )
    )
    assert own["headers"]["authorization"] == "Bearer api-token"  # for hosts with API auth

    rollback = call(
        run,
        jp_fetch,
        "microlib/proxy/echo/microlib/api/deploy/Order/rollback",
        method="POST",
        body=json.dumps({"version": "1.0.0"}),
        headers={"Content-Type": "application/json"},
    )
    assert rollback.code == 200
    # A host cannot set cookies on Jupyter's origin (Jupyter may set its own).
    assert not [c for c in rollback.headers.get_list("Set-Cookie") if "stolen" in c]
    seen = body(rollback)
    assert seen["headers"]["authorization"] == "Bearer s3cret-token"
    assert json.loads(seen["body"]) == {"version": "1.0.0"}
    unpublish = body(
        call(run, jp_fetch, "microlib/proxy/echo/microlib/api/deploy/Order", method="DELETE")
    )
    assert (unpublish["method"], unpublish["headers"]["authorization"]) == (
        "DELETE",
        "Bearer s3cret-token",
    )
    # Not a deploy route: the token is not sent.
    lookalike = body(call(run, jp_fetch, "microlib/proxy/echo/microlib/api/deployments"))
    assert "authorization" not in lookalike["headers"]


def test_deploy_token_from_the_environment_or_a_clear_refusal(
    echo: EchoServer,
    runtime: Path,
    run: Any,
    jp_fetch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(runtime, "env-host", echo.url, token_env=TOKEN_ENV)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    refused = call(
        run, jp_fetch, "microlib/proxy/env-host/microlib/api/deploy/Order", method="DELETE"
    )
    assert refused.code == 403
    assert body(refused)["error"] == (
        "the Jupyter server cannot read the deploy token of this host: "
        f"{TOKEN_ENV} is set in the kernel but not in the Jupyter server's environment"
    )
    assert echo.seen == []  # nothing reached the host

    monkeypatch.setenv(TOKEN_ENV, "from-env")
    sent = body(
        call(run, jp_fetch, "microlib/proxy/env-host/microlib/api/deploy/Order", method="DELETE")
    )
    assert sent["headers"]["authorization"] == "Bearer from-env"


def test_an_unreachable_host_is_a_502_and_the_server_stays_up(
    runtime: Path, run: Any, jp_fetch: Any
) -> None:
    register(runtime, "silent", "http://127.0.0.1:9")
    response = call(run, jp_fetch, "microlib/proxy/silent/microlib/api/config")
    assert response.code == 502
    assert body(response)["error"] == (
        "cannot reach the host of kernel silent at http://127.0.0.1:9"
    )
    assert call(run, jp_fetch, "microlib", "hosts").code == 200


def test_rollback_and_unpublish_through_the_proxy(
    served: Served, runtime: Path, run: Any, jp_fetch: Any
) -> None:
    registered(served, runtime)
    served.host.publish(served.models["Order"])  # 1.0.1
    deploy = "microlib/proxy/" + KID + "/microlib/api/deploy/Order"
    rolled = call(
        run,
        jp_fetch,
        deploy + "/rollback",
        method="POST",
        body=json.dumps({"version": "1.0.0"}),
        headers={"Content-Type": "application/json"},
    )
    assert rolled.code == 200, rolled.body
    assert body(rolled)["active"] == "1.0.0"
    gone = call(run, jp_fetch, deploy, method="DELETE")
    assert gone.code == 200, gone.body
    assert call(run, jp_fetch, "microlib/proxy/" + KID + "/microlib/api/models/orders").code == 404


def test_server_registration_is_written_and_removed(
    jp_serverapp: Any, runtime: Path, run: Any
) -> None:
    path = runtime / f"microlib-server-{os.getpid()}.json"
    data = json.loads(path.read_text())
    assert data["pid"] == os.getpid() and data["base_url"] == jp_serverapp.base_url
    assert path.stat().st_mode & 0o777 == 0o600
    extension = jp_serverapp.web_app.settings["microlib_kernel"]
    run(extension.stop_extension())
    assert not path.exists()


# -- helpers -----------------------------------------------------------------------------


def run_host(served: Served, coro: Any) -> Any:
    """Run a model coroutine on the host's loop (as a notebook cell's await does)."""
    return served.host.loop.run(coro)


def dead_pid() -> int:
    """The id of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(proc.pid, 0)
        except ProcessLookupError:
            return proc.pid
        time.sleep(0.05)
    pytest.skip("the pid of an exited process is still in use")


def test_proxy_keeps_working_with_auth_on(
    tmp_path: Path, runtime: Path, run: Any, jp_fetch: Any
) -> None:
    """A host with JWT auth on: the proxy sends its deploy token unless the browser sends
    its own token (X-Microlib-Authorization), which then decides the roles."""
    from tests.jwt_support import SigningKey

    key = SigningKey.rsa("k")
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(key.public_pem())
    s = serve_host(tmp_path, jwt_key=str(pem), auth_scopes="write:*=clerk")
    try:
        token_file = s.host.settings.home_path / "deploy-token"
        s.host.deploy_token  # noqa: B018 - written on first use
        register(runtime, KID, s.url, token_file=str(token_file), auth=True)
        hosts = body(call(run, jp_fetch, "microlib", "hosts"))["hosts"]
        listed_host = next(h for h in hosts if h["kernel_id"] == KID)
        assert listed_host["status"] == "ok", listed_host
        assert {m["name"] for m in listed_host["models"]} >= {"Order", "Customer"}
        listed = call(run, jp_fetch, f"microlib/proxy/{KID}/microlib/api/models/orders")
        assert listed.code == 200 and json.loads(listed.body) == []
        viewer = key.token(["viewer"], aud=None, iss=None)
        refused = call(
            run,
            jp_fetch,
            f"microlib/proxy/{KID}/microlib/api/models/orders",
            method="POST",
            body=json.dumps({"items": [{"sku": "a", "price": 1}]}),
            headers={"X-Microlib-Authorization": f"Bearer {viewer}"},
            raise_error=False,
        )
        assert refused.code == 403  # the browser's own token: its roles count
    finally:
        s.host.close()
