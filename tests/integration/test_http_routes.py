"""Commands, relations, ports, the live registry and the host routes, over real HTTP."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from microlib_kernel import Host, Model
from microlib_kernel.http.server import start_server, stop_server
from tests.http_support import ITEMS, Served, create_order, serve_host
from tests.models import make_models


@contextlib.contextmanager
def api_with(host: Host, **parts: Any) -> Iterator[httpx.Client]:
    """A client of a second server on ``host`` whose ``HostApi`` has ``parts`` replaced.

    The routes get their services from the ``HostApi`` they are built with: stand-ins
    go in there, through the same seam ``Host.serve`` uses, not into the host.
    """
    server, url = host.loop.run(
        start_server(dataclasses.replace(host.api, **parts), 0, "127.0.0.1")
    )
    try:
        with httpx.Client(base_url=url + host.settings.api_root, timeout=10) as client:
            yield client
    finally:
        host.loop.run(stop_server(server))


# -- CRUD -----------------------------------------------------------------------------------------
# -- commands, relations, ports -------------------------------------------------------------------


def test_commands_by_get_and_patch_with_roles(served: Served, api: httpx.Client) -> None:
    order = create_order(api, total=2)
    oid = order["id"]
    denied: list[Any] = []
    served.host.events.on("order.command_denied", lambda e: denied.append(e.data))
    r = api.get(f"/models/orders/{oid}?command=summary")
    assert r.status_code == 403 and r.json()["error_type"] == "Forbidden"
    assert r.json()["acl"] == ["read"]
    r = api.get(f"/models/orders/{oid}?command=summary", headers={"X-Microlib-Roles": "x ,  read"})
    assert r.status_code == 200 and r.json() == {"summary": f"{oid}:2.0"}
    r = api.patch(f"/models/orders/{oid}/summary", headers={"X-Microlib-Roles": "read"})
    assert r.status_code == 200 and r.json() == {"summary": f"{oid}:2.0"}
    r = api.patch(
        f"/models/orders/{oid}/summary", json={"x": 1}, headers={"X-Microlib-Roles": "read"}
    )
    assert r.status_code == 400 and "bad arguments" in r.json()["error"]
    r = api.patch(f"/models/orders/{oid}/nothing", json={})
    assert r.status_code == 404 and "has no command 'nothing'" in r.json()["error"]
    r = api.get(f"/models/orders/{oid}/summary")
    assert r.status_code == 405 and r.headers["allow"] == "PATCH"
    served.host.loop.run(served.host.idle())
    assert denied and denied[0]["command"] == "summary" and denied[0]["roles"] == []
    counter = api.post("/models/counters", json={}).json()
    r = api.patch(f"/models/counters/{counter['id']}/peek")  # open command returning None
    assert r.status_code == 200 and r.json()["id"] == counter["id"]  # -> the instance
    r = api.get(f"/models/orders/{oid}?command=summary&relation=customer")
    assert r.status_code == 400


class _Relations:
    """Stands in for the relations issue's resolver (its documented interface)."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def lookup(self, mv: Any, instance: Model, name: str) -> Any:
        from microlib_kernel.errors import NotFound
        from microlib_kernel.host.relations import RelationResult

        if name != "customer":
            raise NotFound(f"{mv.name} has no relation {name!r}")
        if instance.customer_id is None:  # type: ignore[attr-defined]
            return RelationResult(None, "customer_id is not set")
        customers = self.host.registry.get("Customer")
        found = await self.host.repository("customers").get(
            customers.latest(),
            instance.customer_id,  # type: ignore[attr-defined]
        )
        return RelationResult(found)


def test_relation_routes_answer_what_the_resolver_finds(served: Served) -> None:
    with api_with(served.host, relations=_Relations(served.host)) as api:
        check_relation_routes(api)


def check_relation_routes(api: httpx.Client) -> None:
    customer = api.post("/models/customers", json={"name": "Ada"}).json()
    order = create_order(api, customer_id=customer["id"])
    lonely = create_order(api)
    r = api.get(f"/models/orders/{order['id']}?relation=customer")
    assert r.status_code == 200 and r.json() == {"order": order, "customer": customer}
    r = api.get(f"/models/orders/{order['id']}/customer")
    assert r.status_code == 200 and r.json() == customer
    r = api.get(f"/models/orders/{lonely['id']}?relation=customer")
    assert r.json() == {"order": lonely, "customer": None, "reason": "customer_id is not set"}
    r = api.get(f"/models/orders/{lonely['id']}/customer")
    assert r.json() is None and r.headers["x-microlib-relation-reason"] == "customer_id is not set"
    assert api.get(f"/models/orders/{order['id']}?relation=wife").status_code == 404
    assert api.get(f"/models/orders/{order['id']}/wife").status_code == 404


class _Ports:
    """Stands in for the ports issue's runner: ``call_inbound`` as documented."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def sync(self, entry: Any) -> None:
        return None

    def status(self, model: str, port: str) -> dict[str, Any]:
        return {}

    async def call_inbound(self, mv: Any, instance: Model, name: str, kwargs: dict) -> Model:
        from microlib_kernel.errors import BreakerOpen, NotFound, PortFailed, PortTimeout

        errors = {"fail": PortFailed, "open": BreakerOpen, "slow": PortTimeout}
        if name in errors:
            raise errors[name](f"port {name} went wrong")
        if name != "receive":
            raise NotFound(f"no inbound port {name!r}")
        repo = self.host.repository(mv.spec.endpoint)
        return await repo.update(mv, instance.id, {"note": kwargs["note"]})

    async def close(self) -> None:
        return None


def test_port_route_passes_the_body_and_maps_failures(served: Served) -> None:
    with api_with(served.host, ports=_Ports(served.host)) as api:
        check_port_route(api)


def check_port_route(api: httpx.Client) -> None:
    counter = api.post("/models/counters", json={}).json()
    base = f"/models/counters/{counter['id']}/ports"
    r = api.post(f"{base}/receive", json={"note": "hello"})
    assert r.status_code == 200 and r.json()["note"] == "hello"
    assert r.headers["x-microlib-version"] == "1.0.0"
    for name, status in (("fail", 502), ("open", 503), ("slow", 504), ("nope", 404)):
        r = api.post(f"{base}/{name}", json={})
        assert r.status_code == status, name
        assert ("error_id" in r.json()) == (status >= 500), name
    assert api.post("/models/counters/missing/ports/receive", json={}).status_code == 404


# -- live registry --------------------------------------------------------------------------------


def test_publishing_changes_routes_without_rebuilding_the_app(
    served: Served, api: httpx.Client
) -> None:
    host = served.host
    app = host.server.app
    order = create_order(api)
    assert "/microlib/api/models/orders" in api.get("/openapi.json").json()["paths"]
    host.unpublish("Order")
    assert api.get(f"/models/orders/{order['id']}").status_code == 404
    assert "/microlib/api/models/orders" not in api.get("/openapi.json").json()["paths"]
    Order2, _ = make_models()
    host.publish(Order2)
    r = api.get(f"/models/orders/{order['id']}")
    assert r.status_code == 200 and r.headers["x-microlib-version"] == "1.0.1"
    assert r.json()["id"] == order["id"]
    assert "/microlib/api/models/orders" in api.get("/openapi.json").json()["paths"]
    assert host.server.app is app

    r = api.get(f"/models/orders/{order['id']}", headers={"X-Microlib-Version": "1.0.0"})
    assert r.status_code == 200 and r.headers["x-microlib-version"] == "1.0.0"
    r = api.get(f"/models/orders/{order['id']}", headers={"X-Microlib-Version": "9.9.9"})
    assert r.status_code == 404 and "no version '9.9.9'" in r.json()["error"]
    host.route("Order", {"1.0.0": 50, "1.0.1": 50})
    versions = {
        api.get(f"/models/orders/{order['id']}").headers["x-microlib-version"] for _ in range(5)
    }
    assert len(versions) == 1  # sticky per id
    created = {
        api.post("/models/orders", json={"items": ITEMS}).headers["x-microlib-version"]
        for _ in range(40)
    }
    assert created == {"1.0.0", "1.0.1"}


# -- host routes ----------------------------------------------------------------------------------


def test_config_health_and_sql(served: Served, api: httpx.Client) -> None:
    create_order(api, total=4)
    config = api.get("/config")
    assert config.status_code == 200 and "x-microlib-version" not in config.headers
    names = {m["name"]: m for m in config.json()["models"]}
    assert names["Order"]["endpoint"] == "orders" and names["Order"]["active"] == "1.0.0"
    assert "summary" in names["Order"]["commands"]

    health = api.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    served.host.draining = True
    r = api.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "draining"
    served.host.draining, served.host.starting = False, True
    assert api.get("/health").json()["status"] == "starting"
    served.host.starting = False

    r = api.post("/sql", json={"sql": "SELECT status, sum(total) AS t FROM orders GROUP BY 1"})
    assert r.status_code == 200 and r.json() == {
        "columns": ["status", "t"],
        "rows": [["PENDING", 4.0]],
    }
    assert "x-microlib-version" not in r.headers
    r = api.post(
        "/sql", json={"sql": "SELECT count(*) FROM orders WHERE total > $t", "params": {"t": 1}}
    )
    assert r.json()["rows"] == [[1]]
    r = api.post("/sql", json={"sql": "SELECT ? + 1", "params": [1]})
    assert r.json()["rows"] == [[2]]
    for bad in (
        {"sql": "DELETE FROM orders"},
        {"sql": "CREATE TABLE x (a INT)"},
        {"sql": "ATTACH 'x.db'"},
        {"sql": "SELECT * FROM read_csv('/etc/passwd')"},
        {"sql": "SELECT 1; SELECT 2"},
        {"sql": 42},
        {"query": "SELECT 1"},
        {"sql": "SELECT 1", "params": "x"},
    ):
        r = api.post("/sql", json=bad)
        assert r.status_code == 400, (bad, r.text)


def test_events_stream_with_a_pattern(served: Served, api: httpx.Client) -> None:
    with api.stream("GET", "/events", params={"pattern": "order.*"}, timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(": subscribed to order.*")
        api.post("/models/counters", json={})  # does not match the pattern
        order = create_order(api)
        frame: list[str] = []
        for line in lines:
            if line and not line.startswith(":"):
                frame.append(line)
            elif frame:
                break
        fields = dict(line.split(": ", 1) for line in frame)
        assert fields["event"] == "order.created"
        data = json.loads(fields["data"])
        assert data["name"] == "order.created" and data["model_id"] == order["id"]
        assert data["data"]["id"] == order["id"] and fields["id"] == data["id"]


def test_events_keepalive_and_server_stop_ends_streams(tmp_path: Path) -> None:
    from microlib_kernel.http.routes_admin import AdminRoutes

    s = serve_host(tmp_path)
    try:
        routes = [r for r in s.host.server.app.routes if getattr(r, "path", "").endswith("/events")]
        owner = routes[0].endpoint.__self__
        assert isinstance(owner, AdminRoutes)
        owner.keepalive = 0.05
        with httpx.Client(base_url=s.api, timeout=10) as c, c.stream("GET", "/events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith(": subscribed")
            assert next(lines) == ""
            assert next(lines) == ": keep-alive"
            begin = time.perf_counter()
            s.host.stop_serving()  # must not wait for the open stream
            assert time.perf_counter() - begin < 3
    finally:
        s.host.close()


def test_openapi_documents_every_model_route(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    orders = "/microlib/api/models/orders"
    assert set(paths[orders]) == {"get", "post"}
    assert set(paths[orders + "/{id}"]) == {"parameters", "get", "patch", "delete"}
    assert set(paths[orders + "/{id}/summary"]) == {"parameters", "patch"}
    create = doc["components"]["schemas"]["OrderCreate"]
    assert "id" not in create["properties"] and "revision" not in create["properties"]
    assert create["required"] == ["items"] and create["additionalProperties"] is False
    assert "required" not in doc["components"]["schemas"]["OrderUpdate"]
    model = doc["components"]["schemas"]["Order"]
    assert {"id", "revision", "created_at", "items"} <= set(model["required"])
    post = paths[orders]["post"]
    assert set(post["responses"]) == {"200", "201", "400", "404", "413", "500"}
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OrderCreate"
    }
    assert set(paths[orders + "/{id}"]["patch"]["responses"]) >= {"200", "400", "404", "409"}
    filters = {p["name"] for p in paths[orders]["get"]["parameters"]}
    assert {"status", "total", "__limit", "__offset", "__order", "__count", "count"} <= filters
    assert "items" not in filters
    assert "Customer.Address" in doc["components"]["schemas"]
    summary = paths[orders + "/{id}/summary"]["patch"]
    assert set(summary["responses"]) >= {"200", "403", "404"}


def test_docs_page_is_served_from_the_package(api: httpx.Client) -> None:
    page = api.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/microlib/api/openapi.json" in page.text and "validatorUrl: null" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        r = api.get(f"/docs/static/swagger-ui/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
    assert api.get("/docs/static/swagger-ui/../../app.py").status_code == 404
    r = httpx.get(api.base_url.copy_with(path="/"), follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/microlib/api/docs"
