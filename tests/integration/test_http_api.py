"""The REST API over real HTTP, against ``host.serve(port=0)`` on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_support import ITEMS, Served, create_order, serve_host

# -- CRUD -----------------------------------------------------------------------------------------


def test_crud_round_trip(api: httpx.Client) -> None:
    r = api.post("/models/orders", json={"items": ITEMS, "total": 3.5})
    assert r.status_code == 201
    order = r.json()
    assert r.headers["location"] == f"/microlib/api/models/orders/{order['id']}"
    assert r.headers["x-microlib-version"] == "1.0.0"
    assert order["revision"] == 1 and order["version"] == "1.0.0" and order["status"] == "PENDING"
    assert order["created_at"] == order["updated_at"]

    got = api.get(f"/models/orders/{order['id']}")
    assert got.status_code == 200 and got.json() == order
    assert got.headers["x-microlib-version"] == "1.0.0"

    r = api.patch(f"/models/orders/{order['id']}", json={"status": "CANCELED"})
    assert r.status_code == 200
    assert r.json()["status"] == "CANCELED" and r.json()["revision"] == 2

    r = api.delete(f"/models/orders/{order['id']}")
    assert r.status_code == 200 and r.json()["status"] == "CANCELED"
    r = api.get(f"/models/orders/{order['id']}")
    assert r.status_code == 404
    assert r.headers["x-microlib-version"] == "1.0.0"  # also on a model route's 404
    assert r.json()["error_type"] == "NotFound" and order["id"] in r.json()["error"]


def test_validation_errors_are_400_with_pydantic_details(api: httpx.Client) -> None:
    r = api.post("/models/orders", json={"items": []})
    assert r.status_code == 400
    body = r.json()
    assert body["error_type"] == "ValidationFailed" and body["errors"][0]["loc"] == ["items"]
    assert r.headers["x-microlib-version"] == "1.0.0"
    r = api.post("/models/orders", json={"items": ITEMS, "colour": "red"})
    assert r.status_code == 400 and "Extra inputs" in r.text
    r = api.post("/models/orders", json={"items": ITEMS, "id": "mine"})
    assert r.status_code == 400 and "set by the framework" in r.text
    order = create_order(api)
    r = api.patch(f"/models/orders/{order['id']}", json={"code": "Y"})
    assert r.status_code == 400 and "frozen" in r.text
    r = api.patch(f"/models/orders/{order['id']}", json=[1, 2])
    assert r.status_code == 400 and "must be a JSON object" in r.text


def test_delete_veto_is_400_and_unknown_ids_404(api: httpx.Client) -> None:
    order = create_order(api)
    r = api.delete(f"/models/orders/{order['id']}")
    assert r.status_code == 400
    assert r.json()["error_type"] == "Vetoed" and "canceled or completed" in r.json()["error"]
    assert api.get(f"/models/orders/{order['id']}").status_code == 200
    for method in ("GET", "PATCH", "DELETE"):
        r = api.request(method, "/models/orders/nope", json={})
        assert r.status_code == 404, method
    assert api.get("/models/orders/..%2Fetc").status_code == 404


def test_unknown_endpoint_and_routes_are_json_404(api: httpx.Client) -> None:
    r = api.get("/models/planets")
    assert r.status_code == 404
    assert r.json()["error"].startswith("no model serves endpoint 'planets'")
    assert "x-microlib-version" not in r.headers
    for path in ("/nothing", "/models", "/models/orders/a/b/c/d/e"):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["error_type"] == "NotFound", path
    r = httpx.get(api.base_url.copy_with(path="/not/the/api"))
    assert r.status_code == 404 and "the API is under /microlib/api" in r.json()["error"]


def test_wrong_method_is_405_with_allow(api: httpx.Client) -> None:
    r = api.put("/models/orders", json={})
    assert r.status_code == 405 and r.json()["error_type"] == "MethodNotAllowed"
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    order = create_order(api)
    r = api.post(f"/models/orders/{order['id']}", json={})
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PATCH", "DELETE"}


# -- lists and counts -----------------------------------------------------------------------------


def test_filters_paging_order_and_counts(api: httpx.Client) -> None:
    for total, status in ((1, "PENDING"), (2, "APPROVED"), (3, "PENDING"), (10, "CANCELED")):
        create_order(api, total=total, status=status)
    r = api.get("/models/orders", params={"status": "PENDING"})
    assert r.status_code == 200 and r.headers["x-microlib-version"] == "1.0.0"
    assert [o["total"] for o in r.json()] == [1, 3]
    assert [o["total"] for o in api.get("/models/orders?total=10.0").json()] == [10]
    assert [o["total"] for o in api.get("/models/orders?total=10").json()] == [10]
    r = api.get("/models/orders", params={"__order": "-total", "__limit": 2, "__offset": 1})
    assert [o["total"] for o in r.json()] == [3, 2]
    assert api.get("/models/orders?__count=all").json() == {"total": 4}
    assert api.get("/models/orders?count=all").json() == {"total": 4}
    assert api.get("/models/orders?__count=all&status=PENDING").json() == {"total": 2}
    assert api.get("/models/orders?__count=status:PENDING").json() == {
        "status": "PENDING",
        "total": 2,
    }
    assert api.get("/models/orders?count=status:PENDING").json() == {
        "status": "PENDING",
        "total": 2,
    }
    # A field named "total" cannot be echoed next to the count: the count wins.
    assert api.get("/models/orders?count=total:10").json() == {"total": 1}


@pytest.mark.parametrize(
    "query",
    [
        "colour=red",
        "items=x",
        "total=abc",
        "__limit=-1",
        "__limit=many",
        "__offset=-2",
        "__order=colour",
        "__count=nothing",
        "__count=colour:red",
        "__count=all&count=status:PENDING",
        "status=PENDING&status=CANCELED",
        "__whatever=1",
    ],
)
def test_bad_list_queries_are_400(api: httpx.Client, query: str) -> None:
    r = api.get(f"/models/orders?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error_type"] == "BadQuery" and r.headers["x-microlib-version"] == "1.0.0"


@pytest.mark.parametrize("query", ["n=" + "9" * 30, "n=-" + "9" * 30, "n=1e999999"])
def test_out_of_range_filters_are_not_a_500(api: httpx.Client, query: str) -> None:
    r = api.get(f"/models/counters?{query}")
    assert r.status_code in (200, 400), r.text
    r = api.get(f"/models/orders?{query.replace('n=', 'total=')}")
    assert r.status_code in (200, 400), r.text


# -- idempotency ----------------------------------------------------------------------------------


def test_idempotency_key_becomes_the_id_and_replays(served: Served, api: httpx.Client) -> None:
    created: list[str] = []
    served.host.events.on("order.created", lambda e: created.append(e.model_id))
    headers = {"Idempotency-Key": "order-2024-0001"}
    first = api.post("/models/orders", json={"items": ITEMS}, headers=headers)
    assert first.status_code == 201 and first.json()["id"] == "order-2024-0001"
    again = api.post("/models/orders", json={"items": ITEMS, "total": 99}, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    served.host.loop.run(served.host.idle())
    assert created == ["order-2024-0001"]
    bad = api.post("/models/orders", json={"items": ITEMS}, headers={"Idempotency-Key": "../x"})
    assert bad.status_code == 400 and "invalid id" in bad.json()["error"]
    assert bad.headers["x-microlib-version"] == "1.0.0"


def test_concurrent_replays_wait_for_the_first(served: Served) -> None:
    created: list[str] = []
    served.host.events.on("order.created", lambda e: created.append(e.model_id))

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=served.api, timeout=10) as c:
            return c.post(
                "/models/orders", json={"items": ITEMS}, headers={"Idempotency-Key": "k1"}
            )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(post, range(16)))
    assert sorted(r.status_code for r in replies) == [200] * 15 + [201]
    assert len({r.json()["created_at"] for r in replies}) == 1
    served.host.loop.run(served.host.idle())
    assert created == ["k1"]


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_patches_never_lose_an_update(served: Served, api: httpx.Client) -> None:
    counter = api.post("/models/counters", json={}).json()
    path = f"/models/counters/{counter['id']}"

    def patch(i: int) -> int:
        with httpx.Client(base_url=served.api, timeout=10) as c:
            return c.patch(path, json={"note": f"writer {i}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(patch, range(40)))
    assert codes == [200] * 40
    final = api.get(path).json()
    assert final["n"] == 40 and final["revision"] == 41


def test_if_match_refuses_a_stale_revision_with_409(api: httpx.Client) -> None:
    counter = api.post("/models/counters", json={}).json()
    path = f"/models/counters/{counter['id']}"
    assert api.patch(path, json={"note": "a"}, headers={"If-Match": "1"}).status_code == 200
    r = api.patch(path, json={"note": "b"}, headers={"If-Match": '"1"'})
    assert r.status_code == 409 and r.json()["error_type"] == "Conflict"
    assert r.json()["revision"] == 2 and r.headers["x-microlib-version"] == "1.0.0"
    assert api.patch(path, json={"note": "c"}, headers={"If-Match": 'W/"2"'}).status_code == 200
    assert api.patch(path, json={"note": "d"}, headers={"If-Match": "*"}).status_code == 200
    r = api.patch(path, json={"note": "e"}, headers={"If-Match": "yesterday"})
    assert r.status_code == 400 and "If-Match" in r.json()["error"]


def test_get_is_answered_while_the_callers_thread_runs_long_sync_code(served: Served) -> None:
    order = served.host.loop.run(served.models["Order"].create(items=ITEMS))
    answered: dict[str, float] = {}
    start = threading.Event()

    def client() -> None:
        start.wait(5)
        with httpx.Client(base_url=served.api, timeout=10) as c:
            r = c.get(f"/models/orders/{order.id}")
        answered["at"] = time.perf_counter()
        answered["status"] = r.status_code

    thread = threading.Thread(target=client)
    thread.start()
    begin = time.perf_counter()
    start.set()
    # A "cell" holding this thread with pure-Python work for 1.5 s (bounded).
    x = 0
    while time.perf_counter() - begin < 1.5:
        x += 1
    end = time.perf_counter()
    thread.join(10)
    assert answered["status"] == 200
    assert answered["at"] < end, "the GET waited for the synchronous call to finish"


# -- bodies and failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{bad", b'{"items": [NaN]}', b'{"items": Infinity}', b"\xff\xfe\x00", b"[" * 100_000, b""],
)
def test_malformed_json_is_400(api: httpx.Client, body: bytes) -> None:
    r = api.post("/models/orders", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("malformed JSON") and r.json()["errors"][0]["loc"] == [
        "body"
    ]


def test_bodies_over_the_limit_are_413(tmp_path: Path) -> None:
    s = serve_host(tmp_path, body_limit=1000)
    try:
        big = {"items": [{"sku": "x" * 2000}]}
        with httpx.Client(base_url=s.api, timeout=10) as c:
            r = c.post("/models/orders", json=big)  # declared by Content-Length
            assert r.status_code == 413 and r.json()["error_type"] == "PayloadTooLarge"
            assert r.json()["limit"] == 1000

            def chunks() -> Any:  # no Content-Length: counted as it streams
                yield b'{"items": [{"sku": "'
                for _ in range(20):
                    yield b"x" * 100
                yield b'"}]}'

            r = c.post("/models/orders", content=chunks())
            assert r.status_code == 413
        with httpx.Client(base_url=s.api, timeout=10) as c:
            assert c.post("/models/orders", json={"items": ITEMS}).status_code == 201
            assert (
                c.post("/sql", json={"sql": "SELECT 1", "params": ["x" * 2000]}).status_code == 413
            )
    finally:
        s.host.close()


def test_a_failing_hook_is_a_generic_500_with_an_error_id(
    api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    gadget = api.post("/models/gadgets", json={}).json()
    with caplog.at_level(logging.ERROR, logger="microlib_kernel.http"):
        r = api.patch(f"/models/gadgets/{gadget['id']}", json={"name": "h"})
    assert r.status_code == 500
    body = r.json()
    assert body == {
        "error": "internal error",
        "error_type": "InternalError",
        "error_id": body["error_id"],
    }
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert r.headers["x-microlib-version"] == "1.0.0"
    logged = [rec for rec in caplog.records if body["error_id"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "hunter2" in str(logged[0].exc_info[1])
    assert api.get(f"/models/gadgets/{gadget['id']}").json()["name"] == "g"  # nothing written
