"""The Lambda handler answering real event documents of every source (tests/fixtures/lambda).

One handler is built from ``shop.ipynb`` on a DuckDB file, as at a cold start; every
test sends it events in the shape API Gateway (REST and HTTP API), a Function URL or an
ALB would, and reads the response in that source's format.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microlib_kernel.serverless import LambdaFunction, make_handler
from tests.lambda_support import KINDS, SHOP, LambdaContext, Reply, event, fixture, reply

API = "/microlib/api"
ORDERS = f"{API}/models/orders"


@pytest.fixture(scope="module")
def function(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LambdaFunction]:
    folder = tmp_path_factory.mktemp("lambda")
    fn = make_handler(SHOP, f"duckdb:///{folder}/shop.duckdb")
    yield fn
    fn.close()


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(fn: LambdaFunction, kind: str, method: str, path: str, **kw: Any) -> Reply:
    return reply(kind, fn(event(kind, method, path, **kw), LambdaContext()))


def create(fn: LambdaFunction, kind: str, **fields: Any) -> Reply:
    body = {"customer": "ada", "items": [{"sku": "tea"}], "total": 3.5, **fields}
    return call(fn, kind, "POST", ORDERS, body=body)


def test_cold_start_published_the_notebook_cells(function: LambdaFunction) -> None:
    published = [(p.name, p.version, p.endpoint) for p in function.published]
    # module, service, adapter, model -- in notebook order; the SQL and plain cells are not run
    assert published == [
        ("pricing", None, None),
        ("tax_office", None, None),
        ("billing", None, None),
        ("Order", "1.0.0", "orders"),
    ]
    assert [s.kind for s in function.sources] == ["module", "service", "adapter", "model"]


def test_the_fixture_itself_is_answered(function: LambdaFunction, kind: str) -> None:
    got = reply(kind, function(fixture(kind), LambdaContext()))
    assert got.status == 201, got.body
    assert got.json()["customer"] == "ada"


def test_create_then_get_by_id(function: LambdaFunction, kind: str) -> None:
    created = create(function, kind, customer=f"get-{kind}")
    assert created.status == 201, created.body
    order = created.json()
    assert created.header("x-microlib-version") == "1.0.0"
    assert created.header("content-type") == "application/json"
    location = created.header("location")
    stage = "/prod" if kind == "rest_v1" else ""
    assert location == f"{stage}{ORDERS}/{order['id']}"

    got = call(function, kind, "GET", f"{ORDERS}/{order['id']}")
    assert got.status == 200, got.body
    found = got.json()
    assert found["id"] == order["id"] and found["customer"] == f"get-{kind}"
    # The port consuming order.created ran before the create answered (settled).
    assert found["invoice"] == f"INV-{order['id'][-6:]}"
    assert found["port_flow"] == ["send_invoice"]


def test_list_with_query_parameters(function: LambdaFunction, kind: str) -> None:
    customer = f"list-{kind}"
    for total in (5.0, 1.0, 9.0):
        assert create(function, kind, customer=customer, total=total).status == 201
    listed = call(
        function,
        kind,
        "GET",
        ORDERS,
        query=[("customer", customer), ("__order", "-total"), ("__limit", "2")],
    )
    assert listed.status == 200, listed.body
    assert [o["total"] for o in listed.json()] == [9.0, 5.0]

    counted = call(
        function, kind, "GET", ORDERS, query={"customer": customer, "__count": "status:PENDING"}
    )
    assert counted.json() == {"status": "PENDING", "total": 3}


def test_query_values_are_decoded_once(function: LambdaFunction, kind: str) -> None:
    customer = f"Zoë & co + {kind}?=/"
    assert create(function, kind, customer=customer).status == 201
    listed = call(function, kind, "GET", ORDERS, query={"customer": customer})
    assert [o["customer"] for o in listed.json()] == [customer]


def test_a_validation_error_is_a_400_with_details(function: LambdaFunction, kind: str) -> None:
    got = create(function, kind, total=-1)
    assert got.status == 400
    body = got.json()
    assert body["error_type"] == "ValidationFailed"
    assert any(e["loc"][-1] == "total" for e in body["errors"])
    assert got.header("x-microlib-version") == "1.0.0"


def test_malformed_json_is_a_400(function: LambdaFunction, kind: str) -> None:
    got = call(function, kind, "POST", ORDERS, body=b'{"customer": ')
    assert got.status == 400
    assert "error" in got.json()


def test_unknown_routes_are_404_json(function: LambdaFunction, kind: str) -> None:
    got = call(function, kind, "GET", "/nowhere/at/all")
    assert got.status == 404
    assert got.json()["error_type"] == "NotFound"
    missing_model = call(function, kind, "GET", f"{API}/models/nothing")
    assert missing_model.status == 404
    assert "orders" in missing_model.json()["error"]
    missing_id = call(function, kind, "GET", f"{ORDERS}/does-not-exist")
    assert missing_id.status == 404
    assert missing_id.header("x-microlib-version") == "1.0.0"


def test_method_not_allowed_names_the_allowed_ones(function: LambdaFunction, kind: str) -> None:
    got = call(function, kind, "PUT", ORDERS, body={})
    assert got.status == 405
    assert got.header("allow") == "GET, HEAD, POST"


def test_a_base64_body(function: LambdaFunction, kind: str) -> None:
    body = {"customer": f"b64-{kind}", "items": [{"sku": "thé"}], "total": 1.25}
    got = call(function, kind, "POST", ORDERS, body=body, base64_body=True)
    assert got.status == 201, got.body
    assert got.json()["items"] == [{"sku": "thé"}]


def test_idempotency_key_header(function: LambdaFunction, kind: str) -> None:
    key = f"order-key-{kind.replace('_', '-')}"
    body = {"customer": "idem", "items": [], "total": 2.0}
    first = call(function, kind, "POST", ORDERS, body=body, headers={"Idempotency-Key": key})
    assert first.status == 201, first.body
    assert first.json()["id"] == key
    again = call(function, kind, "POST", ORDERS, body=body, headers={"Idempotency-Key": key})
    assert again.status == 200
    assert again.json()["id"] == key


def test_commands_read_roles_from_headers(function: LambdaFunction, kind: str) -> None:
    order = create(function, kind, total=10.0).json()
    url = f"{ORDERS}/{order['id']}"
    assert call(function, kind, "GET", url, query={"command": "gross"}).json() == {"gross": 12.0}
    denied = call(function, kind, "PATCH", f"{url}/approve", body={})
    assert denied.status == 403
    approved = call(
        function, kind, "PATCH", f"{url}/approve", body={}, headers={"X-Microlib-Roles": "approve"}
    )
    assert approved.status == 200, approved.body
    assert approved.json()["status"] == "APPROVED"


def test_a_bug_is_a_generic_500(function: LambdaFunction, kind: str) -> None:
    order = create(function, kind, customer="crash").json()
    got = call(function, kind, "DELETE", f"{ORDERS}/{order['id']}")
    assert got.status == 500
    body = got.json()
    assert body["error"] == "internal error" and body["error_id"]
    assert b"hunter2" not in got.body


def test_event_streams_answer_501(function: LambdaFunction, kind: str) -> None:
    started = time.monotonic()
    got = call(function, kind, "GET", f"{API}/events")
    assert got.status == 501
    assert "Lambda" in got.json()["error"]
    assert time.monotonic() - started < 5


def test_health_config_and_sql(function: LambdaFunction, kind: str) -> None:
    assert call(function, kind, "GET", f"{API}/health").status == 200
    config = call(function, kind, "GET", f"{API}/config").json()
    assert [m["name"] for m in config["models"]] == ["Order"]
    sql = call(function, kind, "POST", f"{API}/sql", body={"sql": "SELECT count(*) FROM orders"})
    assert sql.status == 200, sql.body
    assert sql.json()["rows"][0][0] >= 1


def test_deploy_routes_refuse_without_the_configured_token(
    function: LambdaFunction, kind: str
) -> None:
    got = call(
        function,
        kind,
        "POST",
        f"{API}/deploy",
        body={"kind": "module", "name": "x", "source": "X = 1"},
        headers={"Authorization": "Bearer guess"},
    )
    assert got.status in (401, 404)  # 401 from the deploy routes (404 where they are absent)
    # Every instance has its own random token, and writes no token file.
    token = function.host.deploy_token
    assert len(token) >= 32 and token != "guess"
    assert not (Path(function.host.settings.home_path) / "deploy-token").exists()


def test_the_docs_page_is_served_as_text(function: LambdaFunction, kind: str) -> None:
    got = call(function, kind, "GET", f"{API}/docs")
    assert got.status == 200
    assert got.raw["isBase64Encoded"] is False
    assert b"swagger-ui" in got.body
    png = call(function, kind, "GET", f"{API}/docs/static/swagger-ui/favicon-32x32.png")
    assert png.status == 200
    assert png.raw["isBase64Encoded"] is True
    assert png.body.startswith(b"\x89PNG")


# -- stages and prefixes --------------------------------------------------------------------


def test_http_api_named_stage_is_stripped(function: LambdaFunction) -> None:
    created = call(
        function, "http_v2", "POST", ORDERS, body={"customer": "staged"}, stage="staging"
    )
    assert created.status == 201, created.body
    assert created.header("location") == f"/staging{ORDERS}/{created.json()['id']}"
    assert call(function, "http_v2", "GET", f"{API}/health", stage="staging").status == 200


def test_rest_api_stage_prefixes_the_docs_and_openapi(function: LambdaFunction) -> None:
    page = call(function, "rest_v1", "GET", f"{API}/docs", stage="v1")
    assert f'"/v1{API}/openapi.json"'.encode() in page.body
    assert f'"/v1{API}/docs/static/swagger-ui/swagger-ui.css"'.encode() in page.body
    assert page.header("content-length") == str(len(page.body))
    spec = call(function, "rest_v1", "GET", f"{API}/openapi.json", stage="v1").json()
    assert spec["servers"] == [{"url": "/v1"}]
    assert f"{ORDERS}/{{id}}" in spec["paths"]
    redirect = call(function, "rest_v1", "GET", API, stage="v1")
    assert redirect.status == 307
    assert redirect.header("location") == f"/v1{API}/docs"


def test_without_a_prefix_nothing_is_rewritten(function: LambdaFunction) -> None:
    spec = call(function, "function_url", "GET", f"{API}/openapi.json").json()
    assert spec["servers"] == [{"url": "/"}]


def test_custom_domain_base_path(tmp_path: Path) -> None:
    fn = make_handler(SHOP, "memory://", base_path="shop/")
    try:
        ev = event("rest_v1", "GET", f"/shop{API}/health")
        ev["requestContext"]["path"] = f"/shop{API}/health"  # a custom domain: no stage
        assert reply("rest_v1", fn(ev, None)).status == 200
    finally:
        fn.close()


# -- bad events and time limits --------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"hello": "world"},
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        [],
        "GET /",
        None,
    ],
)
def test_events_that_are_not_http_are_400(function: LambdaFunction, bad: Any) -> None:
    got = function(bad, None)
    assert got["statusCode"] == 400
    assert got["headers"] == {"content-type": "application/json"}
    assert "malformed Lambda event" in reply("http_v2", got).json()["error"]


def test_a_rest_event_without_method_is_400_in_rest_format(function: LambdaFunction) -> None:
    ev = event("rest_v1", "GET", ORDERS)
    del ev["httpMethod"]
    got = reply("rest_v1", function(ev, None))
    assert got.status == 400
    assert "httpMethod" in got.json()["error"]
    assert got.raw["multiValueHeaders"] == {"content-type": ["application/json"]}


def test_a_v2_event_without_http_context_is_400(function: LambdaFunction) -> None:
    ev = event("http_v2", "GET", ORDERS)
    del ev["requestContext"]["http"]
    got = reply("http_v2", function(ev, None))
    assert got.status == 400
    assert "payload 2.0" in got.json()["error"]


@pytest.mark.parametrize("kind", ["alb", "alb_multi"])
def test_a_bad_alb_event_is_400_in_alb_format(function: LambdaFunction, kind: str) -> None:
    ev = event(kind, "GET", ORDERS)
    del ev["httpMethod"]
    got = reply(kind, function(ev, None))
    assert got.status == 400
    assert got.raw["statusDescription"] == "400 Bad Request"


def test_a_body_that_is_not_base64_is_400(function: LambdaFunction) -> None:
    ev = event("http_v2", "POST", ORDERS, body={"customer": "x"})
    ev["body"] = "not base64!"
    ev["isBase64Encoded"] = True
    got = reply("http_v2", function(ev, None))
    assert got.status == 400
    assert "base64" in got.json()["error"]


def test_a_request_past_the_invocation_deadline_is_504(function: LambdaFunction) -> None:
    order = create(function, "http_v2").json()
    ev = event("http_v2", "GET", f"{ORDERS}/{order['id']}", query={"command": "slow"})
    started = time.monotonic()
    got = reply("http_v2", function(ev, LambdaContext(remaining_ms=1500)))
    took = time.monotonic() - started
    assert got.status == 504
    assert got.json()["error_type"] == "GatewayTimeout"
    assert took < 3, took
    # The host is still fine afterwards.
    assert call(function, "http_v2", "GET", f"{API}/health").status == 200


def test_a_body_over_the_limit_is_413(function: LambdaFunction) -> None:
    big = {"customer": "x" * (2 << 20)}
    got = call(function, "function_url", "POST", ORDERS, body=big, base64_body=True)
    assert got.status == 413
