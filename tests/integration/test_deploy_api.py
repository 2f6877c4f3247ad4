"""The deploy API over real HTTP: the token, code streaming, the log, the client, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from microlib_kernel import HostClient
from microlib_kernel.errors import DeployRefused, NotFound, Unauthorized
from microlib_kernel.host.tokens import find_deploy_token
from tests.deploy_support import DeployHost, open_deploy_host, order_source


@pytest.fixture
def d(tmp_path: Path) -> Iterator[DeployHost]:
    dh = open_deploy_host(tmp_path)
    yield dh
    dh.host.close()


def _marker_source(path: Path) -> str:
    """A source that leaves a file behind when it runs."""
    return f"import pathlib\npathlib.Path({str(path)!r}).write_text('ran')\n" + order_source()


BAD_AUTH = [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Token abc"},
]


@pytest.mark.parametrize("headers", BAD_AUTH)
def test_every_deploy_route_refuses_a_missing_or_wrong_token(
    d: DeployHost, tmp_path: Path, headers: dict[str, str]
) -> None:
    d.host.publish(order_source())
    marker = tmp_path / "ran.txt"
    calls = [
        ("POST", "/deploy", {"source": _marker_source(marker)}),
        ("GET", "/deploy", None),
        ("POST", "/deploy/order/rollback", {"version": "1.0.0"}),
        ("PUT", "/deploy/order/routes", {"weights": {"1.0.0": 1}}),
        ("DELETE", "/deploy/order", None),
        ("POST", "/deploy/nothing/rollback", None),  # unknown models say nothing either
    ]
    with httpx.Client(base_url=d.api, timeout=10) as api:
        for method, path, body in calls:
            r = api.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error_type"] == "Unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
    assert not marker.exists()  # the source never ran
    entry = d.host.registry.get("Order")
    assert list(entry.versions) == ["1.0.0"] and entry.published
    assert [x.who for x in d.host.deployments] == ["python"]


def test_a_right_token_runs_the_source_and_the_log_says_who(d: DeployHost, tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    r = d.deploy(_marker_source(marker), version="2.0.0")
    assert r.status_code == 201
    assert r.json() == {"published": [{"name": "Order", "version": "2.0.0", "endpoint": "orders"}]}
    assert marker.read_text() == "ran"
    log = httpx.get(f"{d.api}/deploy", headers=d.auth).json()["deployments"]
    assert len(log) == 1
    assert log[0]["kind"] == "model" and log[0]["names"] == ["Order"]
    assert log[0]["versions"] == ["2.0.0"] and log[0]["who"] == "http 127.0.0.1"
    assert log[0]["time"].endswith("+00:00")


def test_adapters_services_and_modules_over_http(d: DeployHost) -> None:
    module = d.deploy("def twice(x):\n    return 2 * x\n", kind="module", name="helpers")
    assert module.status_code == 201
    assert module.json()["published"] == [{"name": "helpers", "version": None, "endpoint": None}]
    adapter = d.deploy(
        "from microlib_modules.helpers import twice\n"
        "async def note(order):\n    return {'note_id': str(twice(21))}\n",
        kind="adapter",
        name="audit",
    )
    assert adapter.status_code == 201
    assert adapter.json()["published"] == [{"name": "audit", "version": None, "endpoint": None}]
    service = d.deploy(
        "class Clock:\n    made = 0\n    def __init__(self):\n        Clock.made += 1\nClock()\n",
        kind="service",
        name="clock",
    )
    assert service.status_code == 201 and type(d.host.services.get("clock")).__name__ == "Clock"
    assert d.host.services.get("clock").made == 1  # the trailing expression ran once
    model = d.deploy(
        "from microlib_modules.helpers import twice\n"
        "from microlib_kernel import Model\n"
        "class Pet(Model, endpoint='pets'):\n    legs: int = twice(2)\n"
    )
    assert model.status_code == 201
    with httpx.Client(base_url=d.api, timeout=10) as api:
        assert api.post("/models/pets", json={}).json()["legs"] == 4
    # the rebound adapter serves the port (ports look adapters up at call time)
    d.deploy(order_source())
    with httpx.Client(base_url=d.api, timeout=10) as api:
        order = api.post("/models/orders", json={}).json()
    d.host.loop.run(d.host.idle())
    assert d.host.sql("SELECT note_id FROM orders WHERE id = $id", {"id": order["id"]}).rows == [
        ("42",)
    ]
    log = httpx.get(f"{d.api}/deploy", headers=d.auth).json()["deployments"]
    assert [(e["kind"], e["names"]) for e in log[:3]] == [
        ("module", ["helpers"]),
        ("adapter", ["audit"]),
        ("service", ["clock"]),
    ]


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ({}, "source must be"),
        ({"source": ""}, "source must be"),
        ({"source": 3}, "source must be"),
        ({"source": "x = 1", "kind": "plugin"}, "kind must be one of"),
        ({"source": "x = 1", "kind": "adapter"}, "needs a name"),
        ({"source": "x = 1", "kind": "module", "name": "not valid"}, "needs a name"),
        ({"source": "x = 1", "name": 5}, "name must be a string"),
        ({"source": order_source(), "version": "one"}, "MAJOR.MINOR.PATCH"),
        ({"source": order_source(), "version": 1}, "version must be a string"),
        ({"source": "x = 1", "extra": True}, "unknown key"),
        ({"source": "def f(:\n", "kind": "adapter", "name": "a"}, "line 1"),
        ({"source": "x = 1\n", "kind": "adapter", "name": "a"}, "defines no function"),
        ({"source": "x = 1\n", "kind": "service", "name": "s"}, "defines no object"),
    ],
)
def test_bad_deploys_are_refused_with_a_reason(d: DeployHost, body: dict, expect: str) -> None:
    r = httpx.post(f"{d.api}/deploy", json=body, headers=d.auth, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error_type"] == "DeployRefused" and expect in r.json()["error"]


def test_malformed_and_oversized_bodies(tmp_path: Path) -> None:
    d = open_deploy_host(tmp_path, body_limit=2000)
    try:
        url = f"{d.api}/deploy"
        r = httpx.post(url, content=b"{nope", headers=d.auth)
        assert r.status_code == 400 and r.json()["error_type"] == "DeployRefused"
        r = httpx.post(url, json=["a list"], headers=d.auth)
        assert r.status_code == 400 and r.json()["error_type"] == "DeployRefused"
        r = httpx.post(url, json={"source": "x = 1\n" * 1000}, headers=d.auth)
        assert r.status_code == 413
        assert httpx.put(f"{d.api}/deploy", headers=d.auth).status_code == 405
    finally:
        d.host.close()


def test_an_api_token_does_not_deploy(tmp_path: Path) -> None:
    d = open_deploy_host(tmp_path, auth_tokens="api-token=admin")
    try:
        api_auth = {"Authorization": "Bearer api-token"}
        r = httpx.post(f"{d.api}/deploy", json={"source": order_source()}, headers=api_auth)
        assert r.status_code == 401  # an API token does not deploy
        assert d.deploy(order_source()).status_code == 201  # the deploy token does
        # The deploy token reads the API too (all roles): it can deploy code that does.
        assert httpx.get(f"{d.api}/models/orders", headers=d.auth).status_code == 200
        assert httpx.get(f"{d.api}/models/orders", headers=api_auth).status_code == 200
        client = HostClient(d.url, token="api-token", deploy_token=d.token)
        assert client.deploy(order_source())[0]["version"] == "1.0.1"
        assert client.list("orders") == []
        client.close()
    finally:
        d.host.close()


def test_host_client_deploys_and_raises_the_error_tree(d: DeployHost) -> None:
    with HostClient(d.url, token=d.token) as client:
        assert client.deploy(order_source()) == [
            {"name": "Order", "version": "1.0.0", "endpoint": "orders"}
        ]
        client.deploy(order_source(), version="1.1.0")
        with pytest.raises(DeployRefused) as refused:
            client.deploy(order_source() + "1 / 0\n")
        assert refused.value.details["line"] == 8 and refused.value.status == 400
        with pytest.raises(DeployRefused, match="kind must be"):
            client.deploy("x = 1", kind="plugin")
        entry = client.rollback("order")
        assert entry["active"] == "1.0.0" and entry["versions"] == ["1.0.0", "1.1.0"]
        assert client.rollback("Order", "1.1.0")["active"] == "1.1.0"
        entry = client.route("ORDER", {"1.0.0": 25, "1.1.0": 75})
        assert entry["routes"] == {"1.0.0": 25.0, "1.1.0": 75.0} and entry["active"] == "1.1.0"
        with pytest.raises(NotFound):
            client.route("Order", {"5.0.0": 1})
        with pytest.raises(NotFound):
            client.rollback("Order", "not-a-version")
        client.rollback("Order", "1.0.0")
        with pytest.raises(DeployRefused, match="no version before"):
            client.rollback("Order")
        assert client.unpublish("order")["published"] is False
        assert [e["kind"] for e in client.deployments()][-1] == "unpublish"
    with HostClient(d.url, token="wrong") as client, pytest.raises(Unauthorized):
        client.deploy(order_source())
    with HostClient(d.url) as client, pytest.raises(Unauthorized, match="deploy token"):
        client.deployments()


def test_the_deploy_token_is_found_like_the_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_deploy_token() is None
    (tmp_path / ".microlib").mkdir()
    (tmp_path / ".microlib" / "deploy-token").write_text("from-file\n")
    assert find_deploy_token() == "from-file"
    monkeypatch.setenv("MICROLIB_DEPLOY_TOKEN", "from-env")
    assert find_deploy_token() == "from-env"
    assert find_deploy_token("given") == "given"


def test_openapi_documents_the_deploy_routes(d: DeployHost) -> None:
    doc = httpx.get(f"{d.api}/openapi.json").json()
    paths = doc["paths"]
    root = "/microlib/api"
    deploy = paths[f"{root}/deploy"]
    assert deploy["post"]["security"] == [{"deployToken": []}]
    assert set(deploy["post"]["responses"]) == {"201", "400", "401", "413", "429", "500"}
    assert deploy["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DeployRequest"
    }
    assert set(deploy["get"]["responses"]) == {"200", "401", "429", "500"}
    assert "404" in paths[f"{root}/deploy/{{model}}/rollback"]["post"]["responses"]
    assert "put" in paths[f"{root}/deploy/{{model}}/routes"]
    assert "delete" in paths[f"{root}/deploy/{{model}}"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["deployToken"] == {**schemes["deployToken"], "type": "http", "scheme": "bearer"}
    for name in ("DeployRequest", "DeployResult", "Deployments", "RoutesRequest", "ModelConfig"):
        assert name in doc["components"]["schemas"]


def test_deploy_answers_conform_to_the_documented_schemas(d: DeployHost) -> None:
    from jsonschema import Draft202012Validator  # schemathesis depends on it

    doc = httpx.get(f"{d.api}/openapi.json").json()

    def check(response: httpx.Response, schema: str) -> None:
        root = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
        errors = list(Draft202012Validator(root).iter_errors(response.json()))
        assert not errors, (schema, errors[0].message)

    check(d.deploy(order_source()), "DeployResult")
    check(d.deploy("def f(x):\n    return x\n", kind="adapter", name="util"), "DeployResult")
    d.deploy(order_source())
    with httpx.Client(base_url=d.api, headers=d.auth, timeout=10) as api:
        check(api.post("/deploy/order/rollback", json={"version": "1.0.0"}), "ModelConfig")
        check(api.put("/deploy/order/routes", json={"weights": {"1.0.1": 1}}), "ModelConfig")
        check(api.delete("/deploy/order"), "ModelConfig")
        check(api.get("/deploy"), "Deployments")
        check(api.post("/deploy", json={"source": "x = 1"}), "Error")


def test_closing_the_host_leaves_no_worker_thread(tmp_path: Path) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    d = open_deploy_host(tmp_path)
    d.host.publish(order_source())  # the source runs in a worker thread of the host loop
    d.host.publish("def f(x):\n    return x\n", kind="adapter", name="util")
    d.host.close()
    assert not {t.name for t in threading.enumerate()} - before


def test_generated_tokens_never_look_like_an_option(tmp_path: Path) -> None:
    from microlib_kernel.host.tokens import load_or_create_token

    for i in range(200):
        assert not load_or_create_token(tmp_path / str(i), None).startswith("-")
