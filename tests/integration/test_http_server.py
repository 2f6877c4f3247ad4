"""The background server (ports, stop, auth) and the clients (HostClient, CLI) over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from microlib_kernel import (
    Conflict,
    Forbidden,
    Host,
    HostClient,
    MicrolibError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    Vetoed,
)
from microlib_kernel.cli import main
from microlib_kernel.http.server import PortInUse
from tests.http_support import Served, serve_host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the server -----------------------------------------------------------------------------------


def test_serve_port_zero_then_stop_frees_the_port() -> None:
    host = Host("memory://")
    try:
        url = host.serve(port=0)
        assert url.startswith("http://127.0.0.1:") and host.url == url
        assert host.api_url == url + "/microlib/api"
        assert host.serve() == url  # already serving: same server
        port = int(url.rsplit(":", 1)[1])
        assert httpx.get(f"{url}/microlib/api/health").status_code == 200
        host.stop_serving()
        assert host.url is None
        with socket.socket() as s:  # the port is free again
            s.bind(("127.0.0.1", port))
        assert host.serve(port=port) == url  # and the host can serve on it again
    finally:
        host.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/microlib/api/health")


def test_a_busy_port_is_a_clear_error_naming_it() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        host = Host("memory://")
        try:
            with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is busy") as info:
                host.serve(port=port)
            assert info.value.details["port"] == port
            assert host.server is None
            assert host.serve(port=0) != f"http://127.0.0.1:{port}"  # the host still works
        finally:
            host.close()


def test_bind_address_and_api_root_come_from_the_settings() -> None:
    host = Host("memory://", api_root="/api/v2", bind="localhost", port=_free_port())
    try:
        url = host.serve()
        assert httpx.get(f"{url}/api/v2/health").json()["status"] == "ok"
        assert httpx.get(f"{url}/microlib/api/health").status_code == 404
    finally:
        host.close()


def test_a_bad_bind_address_is_a_clear_error() -> None:
    host = Host("memory://")
    try:
        with pytest.raises(MicrolibError, match="cannot"):
            host.serve(port=0, bind="203.0.113.7")  # not an address of this machine
    finally:
        host.close()


# -- auth -----------------------------------------------------------------------------------------


def test_tokens_turn_auth_on(tmp_path: Path) -> None:
    s = serve_host(tmp_path, auth_tokens="reader-token=read,admin-token=admin+write")
    try:
        with httpx.Client(base_url=s.api, timeout=10) as anon:
            r = anon.get("/models/orders")
            assert r.status_code == 401 and r.json()["error_type"] == "Unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
            for path in ("/config", "/models/planets"):
                assert anon.get(path).status_code == 401
            assert anon.post("/sql", json={"sql": "SELECT 1"}).status_code == 401
            assert anon.get("/health").status_code == 200  # open for load balancers
            r = anon.get("/models/orders", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401 and r.json()["error"] == "unknown API token"
            assert (
                anon.get("/models/orders", headers={"Authorization": "Basic x"}).status_code == 401
            )
            doc = anon.get("/openapi.json").json()
            assert doc["security"] == [{"bearerAuth": []}]
            assert "401" in doc["paths"]["/microlib/api/models/orders"]["post"]["responses"]
        with HostClient(s.url, token="reader-token") as reader:
            order = reader.create("orders", {"items": [{"sku": "a"}]})
            assert reader.command("orders", order["id"], "summary")["summary"].startswith(
                order["id"]
            )
        # X-Microlib-Roles counts only while auth is off: the token's roles decide.
        with HostClient(s.url, token="admin-token") as admin, pytest.raises(Forbidden):
            admin.command("orders", order["id"], "summary", roles=["read"])
    finally:
        s.host.close()


# -- HostClient -----------------------------------------------------------------------------------


def test_host_client_speaks_the_whole_api(served: Served) -> None:
    with HostClient(served.url) as client:
        assert repr(client) == f"<HostClient {served.url}>"
        order = client.create("orders", {"items": [{"sku": "a"}], "total": 2})
        assert client.get("orders", order["id"]) == order
        again = client.create("orders", {"items": [{}]}, idempotency_key="k-9")
        assert client.create("orders", {"items": [{}]}, idempotency_key="k-9") == again
        client.create("orders", {"items": [{}], "total": 7, "status": "CANCELED"})
        assert [o["total"] for o in client.list("orders", order="-total", limit=2)] == [7, 2]
        assert [o["total"] for o in client.list("orders", status="CANCELED")] == [7]
        assert client.count("orders") == 3 and client.count("orders", status="PENDING") == 2
        updated = client.update("orders", order["id"], {"status": "CANCELED"})
        assert updated["revision"] == 2
        with pytest.raises(Conflict) as conflict:
            client.update("orders", order["id"], {"total": 1}, revision=1)
        assert conflict.value.status == 409 and conflict.value.details["revision"] == 2
        assert client.command("orders", order["id"], "summary", roles=["read"]) == {
            "summary": f"{order['id']}:2.0"
        }
        with pytest.raises(Forbidden):
            client.command("orders", order["id"], "summary")
        assert client.delete("orders", order["id"])["id"] == order["id"]
        with pytest.raises(NotFound):
            client.get("orders", order["id"])
        with pytest.raises(Vetoed):
            client.delete("orders", again["id"])
        with pytest.raises(ValidationFailed) as invalid:
            client.create("orders", {"items": []})
        assert isinstance(invalid.value.errors, list) and invalid.value.errors[0]["loc"] == [
            "items"
        ]
        result = client.sql("SELECT status, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1")
        assert result.columns == ["status", "n"]
        assert result.rows == [("CANCELED", 1), ("PENDING", 1)]
        assert client.sql("SELECT $x AS x", {"x": 5}).rows == [(5,)]
        names = [m["name"] for m in client.models()]
        assert {"Order", "Customer", "Counter", "Gadget"} <= set(names)
        assert client.health()["status"] == "ok"
        with pytest.raises(MicrolibError) as internal:
            gadget = client.create("gadgets", {})
            client.update("gadgets", gadget["id"], {"name": "x"})
        assert internal.value.status == 500 and "error_id" in internal.value.details
    with HostClient(served.host.api_url) as by_api_url:  # the API URL works too
        assert by_api_url.url == served.url and by_api_url.health()["status"] == "ok"


def test_host_client_errors_without_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("MICROLIB_URL", f"http://127.0.0.1:{port}")
    with HostClient() as client:
        assert client.url == f"http://127.0.0.1:{port}"
        with pytest.raises(ServiceUnavailable, match="no host answers"):
            client.models()


def test_host_client_413(tmp_path: Path) -> None:
    s = serve_host(tmp_path, body_limit=100)
    try:
        with HostClient(s.url) as client, pytest.raises(PayloadTooLarge):
            client.create("orders", {"items": [{"sku": "x" * 200}]})
    finally:
        s.host.close()


def test_host_client_with_a_wrong_token(tmp_path: Path) -> None:
    s = serve_host(tmp_path, auth_tokens="t1=read")
    try:
        with HostClient(s.url, token="t2") as client, pytest.raises(Unauthorized):
            client.list("orders")
    finally:
        s.host.close()


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_models_and_sql_over_http(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with HostClient(served.url) as client:
        client.create("orders", {"items": [{}], "total": 3})
    assert main(["models", "--url", served.url]) == 0
    out = capsys.readouterr().out
    assert "Order" in out and "1.0.0" in out and f"{served.api}/models/orders" in out
    assert main(["models", "--url", served.url, "--format", "json"]) == 0
    assert '"endpoint": "orders"' in capsys.readouterr().out
    monkeypatch.setenv("MICROLIB_URL", served.url)
    assert main(["sql", "SELECT total FROM orders", "--format", "json"]) == 0
    assert '"rows"' in capsys.readouterr().out
    code = main(["sql", "SELECT total FROM orders WHERE total > $t", "-p", "t", "1"])
    assert code == 0 and "3.0" in capsys.readouterr().out
    assert main(["sql", "DROP TABLE orders"]) == 1
    assert "microlib sql:" in capsys.readouterr().err


def test_cli_without_a_host_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--url", f"http://127.0.0.1:{_free_port()}"]) == 1
    assert "no host answers" in capsys.readouterr().err


def test_cli_sql_on_a_datasource_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.models import make_models

    url = f"duckdb:///{tmp_path}/direct.duckdb"
    host = Host(url)
    order, _ = make_models()
    host.publish(order)
    host.loop.run(order.create(items=[{}], total=4))
    host.close()
    assert main(["sql", "SELECT total FROM orders", "--datasource", url]) == 0
    assert "4.0" in capsys.readouterr().out
