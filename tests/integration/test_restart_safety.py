"""Restart safety on a real DuckDB file: versions, weights, rollbacks, pins and unpublishes
made over HTTP come back, exactly, in a new Host on the same file (issue 16)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from microlib_kernel.errors import DatasourceError
from microlib_kernel.store.deployments import MemoryDeploymentLog
from tests.models import make_models

MODULE = "RATE = 1.25\n"

ORDER = """\
from microlib_kernel import Model, command
from microlib_modules.pricing import RATE

class Order(Model, endpoint="orders"):
    total: float = 0.0
{extra}
    @command
    def tag(self):
        return {{"tag": "{tag}", "rate": RATE}}
"""

CUSTOMER = """\
from microlib_kernel import Model

class Customer(Model, endpoint="customers"):
    name: str = "{name}"
"""

DRAFT = """\
from microlib_kernel import Model

class Draft(Model, endpoint="drafts"):
    text: str = ""
"""


def order(tag: str, extra: str = "") -> str:
    return ORDER.format(tag=tag, extra=f"    {extra}\n" if extra else "")


class Api:
    """A served host and an httpx client with the deploy token."""

    def __init__(self, host: Host) -> None:
        self.host = host
        url = host.serve(port=0)
        self.client = httpx.Client(
            base_url=f"{url}{host.settings.api_root}",
            headers={"Authorization": f"Bearer {host.deploy_token}"},
            timeout=30,
        )

    def deploy(self, source: str, **body: Any) -> httpx.Response:
        return self.client.post("/deploy", json={"source": source, **body})

    def ok(self, response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json()

    def state(self) -> dict[str, Any]:
        """What a client can see of the deployments: models, versions, routes, history."""
        models = {
            m["name"]: {k: m[k] for k in ("active", "versions", "routes", "published", "deploys")}
            for m in self.ok(self.client.get("/config"))["models"]
        }
        history = [
            {k: d[k] for k in ("kind", "names", "versions", "who")}
            for d in self.ok(self.client.get("/deploy"))["deployments"]
        ]
        return {"models": models, "history": history}

    def answers(self, ids: list[str]) -> list[tuple[str, Any]]:
        """For each order: the version serving it and its command's answer."""
        out = []
        for id in ids:
            r = self.client.get(f"/models/orders/{id}", params={"command": "tag"})
            out.append((r.headers.get("x-microlib-version"), self.ok(r)))
        return out


def settings_for(tmp_path: Path, url: str | None = None) -> Settings:
    return Settings.load(
        cwd=tmp_path, env={}, datasource=url or f"duckdb:///{tmp_path}/data/app.duckdb"
    )


@contextmanager
def served(tmp_path: Path, url: str | None = None) -> Iterator[Api]:
    host = Host(settings=settings_for(tmp_path, url))
    try:
        api = Api(host)
        try:
            yield api
        finally:
            api.client.close()
    finally:
        host.close()


def deploy_everything(api: Api) -> list[str]:
    """Module, adapter, three Order versions (one pinned), routes 90/10, a rollback, an
    unpublish; returns the ids of 150 orders (at 90/10, all on one version: 0.9**150)."""
    api.ok(api.deploy(MODULE, kind="module", name="pricing"), 201)
    api.ok(api.deploy("def note(order):\n    return None\n", kind="adapter", name="audit"), 201)
    assert api.ok(api.deploy(order("v1")), 201)["published"][0]["version"] == "1.0.0"
    assert (
        api.ok(api.deploy(order("v2", "note: str = ''")), 201)["published"][0]["version"] == "1.0.1"
    )
    pinned = api.ok(api.deploy(order("v3", "note: str = ''"), version="2.0.0"), 201)
    assert pinned["published"][0]["version"] == "2.0.0"
    api.ok(api.client.put("/deploy/order/routes", json={"weights": {"1.0.0": 90, "2.0.0": 10}}))
    api.ok(api.deploy(CUSTOMER.format(name="a")), 201)
    api.ok(api.deploy(CUSTOMER.format(name="b")), 201)
    api.ok(api.client.post("/deploy/customer/rollback", json={}))
    api.ok(api.deploy(DRAFT), 201)
    api.ok(api.client.delete("/deploy/draft"))
    return [
        api.ok(api.client.post("/models/orders", json={"total": i}), 201)["id"] for i in range(150)
    ]


def test_a_new_host_on_the_same_file_serves_exactly_what_was_deployed(tmp_path: Path) -> None:
    with served(tmp_path) as api:
        ids = deploy_everything(api)
        before = api.state()
        answers = api.answers(ids)
        pinned = api.client.get(
            f"/models/orders/{ids[0]}",
            params={"command": "tag"},
            headers={"X-Microlib-Version": "1.0.1"},
        )
        assert api.ok(pinned)["tag"] == "v2"
    assert before["models"]["Order"]["routes"] == {"1.0.0": 90.0, "2.0.0": 10.0}
    assert before["models"]["Customer"]["routes"] == {"1.0.0": 100.0}
    assert {v for v, _ in answers} == {"1.0.0", "2.0.0"}  # both routes take traffic
    assert {a["tag"] for _, a in answers} == {"v1", "v3"}

    with served(tmp_path) as api:
        report = api.host.restore_report
        assert report.ok and not report.notes, report.summary()
        assert report.restored == [
            "module pricing", "adapter audit", "Order 1.0.0", "Order 1.0.1", "Order 2.0.0",
            "Customer 1.0.0", "Customer 1.0.1", "Draft 1.0.0",
        ]  # fmt: skip
        assert api.state() == before
        assert api.answers(ids) == answers  # same version per id (sticky), same code
        again = api.client.get(
            f"/models/orders/{ids[0]}",
            params={"command": "tag"},
            headers={"X-Microlib-Version": "1.0.1"},
        )
        assert api.ok(again) == {"tag": "v2", "rate": 1.25}
        assert api.client.get("/models/drafts").status_code == 404  # still unpublished
        assert api.ok(api.client.get("/health"))["status"] == "ok"
        assert "restore" not in api.ok(api.client.get("/health"))
        # Deploying on goes on from the restored numbers.
        assert (
            api.ok(api.deploy(order("v4", "note: str = ''")), 201)["published"][0]["version"]
            == "2.0.1"
        )
        records = len(api.host.deployment_log.load())  # type: ignore[union-attr]

    with served(tmp_path) as api:  # a restart appends nothing to the log
        assert len(api.host.deployment_log.load()) == records  # type: ignore[union-attr]
        assert api.state()["models"]["Order"]["active"] == "2.0.1"


def test_a_version_whose_code_no_longer_runs_is_reported_and_the_others_serve(
    tmp_path: Path,
) -> None:
    config = tmp_path / "limits.json"
    config.write_text('{"max": 5}')
    fragile = order(
        "v2",
        "limit: int = __import__('json').loads("
        f"__import__('pathlib').Path({str(config)!r}).read_text())['max']",
    )
    with served(tmp_path) as api:
        api.ok(api.deploy(MODULE, kind="module", name="pricing"), 201)
        api.ok(api.deploy(order("v1")), 201)
        api.ok(api.deploy(fragile), 201)
        api.ok(api.deploy(CUSTOMER.format(name="a")), 201)
        created = api.ok(api.client.post("/models/orders", json={"total": 3}), 201)
        assert created["limit"] == 5
    config.unlink()

    with served(tmp_path) as api:
        report = api.host.restore_report
        assert [(f["name"], f["version"]) for f in report.failed] == [("Order", "1.0.1")]
        assert "FileNotFoundError" in report.failed[0]["error"]
        assert "serving {'1.0.0': 100.0}" in report.notes[0]
        health = api.ok(api.client.get("/health"))
        assert health["status"] == "ok" and health["restore"]["failed"][0]["version"] == "1.0.1"
        models = api.state()["models"]
        assert models["Order"]["versions"] == ["1.0.0"] and models["Order"]["active"] == "1.0.0"
        assert models["Customer"]["active"] == "1.0.0"
        got = api.client.get(f"/models/orders/{created['id']}", params={"command": "tag"})
        assert api.ok(got)["tag"] == "v1"  # the data stays; the surviving version serves it


def test_a_starting_host_skips_sources_it_already_serves(tmp_path: Path) -> None:
    with served(tmp_path) as api:
        api.ok(api.deploy(MODULE, kind="module", name="pricing"), 201)
        api.ok(api.deploy(order("v1")), 201)
        api.ok(api.deploy(order("v2")), 201)
        api.ok(api.client.post("/deploy/order/rollback", json={}))
    with served(tmp_path) as api:
        log = api.host.deployment_log
        assert log is not None
        count = len(log.load())
        api.host.starting = True  # as `microlib serve NOTEBOOK` while it redeploys
        # The notebook's sources: all unchanged, so the rollback to 1.0.0 stands.
        assert api.ok(api.deploy(MODULE, kind="module", name="pricing"), 201)["published"] == [
            {"name": "pricing", "version": None, "endpoint": None}
        ]
        for source, version in ((order("v1"), "1.0.0"), (order("v2"), "1.0.1")):
            published = api.ok(api.deploy(source), 201)["published"]
            assert published == [{"name": "Order", "version": version, "endpoint": "orders"}]
        assert len(log.load()) == count
        assert api.state()["models"]["Order"]["routes"] == {"1.0.0": 100.0}
        # A changed source is a new version, as always.
        assert api.ok(api.deploy(order("v3")), 201)["published"][0]["version"] == "1.0.2"
        api.host.starting = False
        # Once started, an identical source is a new version too (a hot redeploy).
        assert api.ok(api.deploy(order("v3")), 201)["published"][0]["version"] == "1.0.3"


def test_a_change_the_log_cannot_record_is_refused_and_not_applied(tmp_path: Path) -> None:
    with served(tmp_path) as api:
        api.ok(api.deploy(MODULE, kind="module", name="pricing"), 201)
        api.ok(api.deploy(order("v1")), 201)
        api.ok(api.deploy(order("v2")), 201)
        before = api.state()
        assert api.host.deployment_log is not None
        api.host.deployment_log.close()  # the log's storage is gone
        for response in (
            api.deploy(order("v3")),
            api.deploy("def x(o):\n    return None\n", kind="adapter", name="late"),
            api.client.put("/deploy/order/routes", json={"weights": {"1.0.0": 50, "1.0.1": 50}}),
            api.client.post("/deploy/order/rollback", json={}),
            api.client.delete("/deploy/order"),
        ):
            assert response.status_code == 503, response.text
            assert "could not be recorded" in response.json()["error"]
            assert "nothing was changed" in response.json()["error"]
        assert api.state() == before
        assert "late.x" not in api.host.adapters
        pricing = sys.modules["microlib_modules.pricing"]
        refused = api.deploy("RATE = 9.0\n", kind="module", name="pricing")
        assert refused.status_code == 503  # the module ran, was not recorded: it is put back
        assert sys.modules["microlib_modules.pricing"] is pricing and pricing.RATE == 1.25


def test_models_published_as_classes_are_not_recorded(tmp_path: Path) -> None:
    with served(tmp_path) as api:
        Order, Customer = make_models()
        api.host.publish(Customer)
        api.host.publish(Order)
        api.host.rollback("customer", "1.0.0")
        api.host.route("order", {"1.0.0": 100})
        api.host.unpublish("customer")
        assert api.host.deployment_log is not None
        assert api.host.deployment_log.load() == []
    with served(tmp_path) as api:
        assert api.host.restore_report.records == 0 and api.state()["models"] == {}


@pytest.mark.parametrize("url", ["memory://", "duckdb://:memory:"])
def test_memory_hosts_keep_their_log_in_memory(tmp_path: Path, url: str) -> None:
    with served(tmp_path, url) as api:
        assert isinstance(api.host.deployment_log, MemoryDeploymentLog)
        api.ok(api.deploy(CUSTOMER.format(name="a")), 201)
        assert len(api.host.deployment_log.load()) == 1
    with served(tmp_path, url) as api:
        assert api.state()["models"] == {}


def test_an_endpoint_taken_over_after_an_unpublish_is_restored(tmp_path: Path) -> None:
    memo = DRAFT.replace("class Draft", "class Memo").replace("text: str", "body: str")
    with served(tmp_path) as api:
        api.ok(api.deploy(DRAFT), 201)
        draft = api.ok(api.client.post("/models/drafts", json={"text": "hello"}), 201)
        api.ok(api.client.delete("/deploy/draft"))
        api.ok(api.deploy(memo), 201)  # the same endpoint, another model
        before = api.state()
    with served(tmp_path) as api:
        assert api.host.restore_report.ok and api.state() == before
        got = api.ok(api.client.get(f"/models/drafts/{draft['id']}"))
        assert got["body"] == "" and "text" not in got  # served by Memo, not Draft


def test_a_migration_retried_after_a_refused_record_runs_once(tmp_path: Path) -> None:
    from microlib_kernel.errors import ServiceUnavailable
    from microlib_kernel.store.deployments import DeploymentRecord

    v1 = "from microlib_kernel import Model\n\nclass Meter(Model, endpoint='meters'):\n    n: int\n"
    v2 = v1.replace("    n: int\n", "    n: int\n    unit: str\n") + (
        "\n    @classmethod\n    def migrate(cls, record):\n"
        "        return {**record, 'n': record['n'] * 10, 'unit': 'x10'}\n"
    )
    host = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource="duckdb:///m.duckdb"))
    try:
        host.publish(v1)
        meter = host.model("Meter")
        for n in (1, 2):
            host.loop.run(meter.create(n=n))
        log = host.deployment_log
        assert log is not None
        real = log.append
        calls: list[DeploymentRecord] = []

        def refuse_once(record: DeploymentRecord) -> DeploymentRecord:
            calls.append(record)
            if len(calls) == 1:
                raise DatasourceError("disk full")
            return real(record)

        log.append = refuse_once  # type: ignore[method-assign]
        with pytest.raises(ServiceUnavailable, match="nothing was changed"):
            host.publish(v2)
        host.publish(v2)  # the retry: the same version number
        rows = host.sql("SELECT n, unit FROM meters ORDER BY n").rows
        assert rows == [(10, "x10"), (20, "x10")]
    finally:
        host.close()
