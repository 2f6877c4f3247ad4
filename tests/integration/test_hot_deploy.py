"""Zero-downtime redeploys over real HTTP (``host.serve(port=0)``), and version routing.

The load test republishes a model several times -- from Python and through
``POST /deploy``, one of them adding a column -- while threads issue POST and GET:
no request may fail, nothing may be lost, each create emits exactly one ``created``
event, and a port consuming that event runs exactly once per event however many
versions were published.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel import Model, port
from microlib_kernel.errors import NotFound
from tests.deploy_support import DeployHost, open_deploy_host, order_source, under_load, wait_until


@pytest.fixture
def d(tmp_path: Path) -> Iterator[DeployHost]:
    dh = open_deploy_host(tmp_path)
    yield dh
    dh.host.close()


def make_order(*, extra: bool = False) -> type[Model]:
    """The Order of :func:`order_source`, defined in Python (``extra: int = 7`` if asked)."""
    if extra:

        class Order(Model, endpoint="orders"):
            total: float = 0.0
            note_id: str | None = None
            extra: int = 7
            note = port("audit.note", consumes="order.created")

        return Order

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        total: float = 0.0
        note_id: str | None = None
        note = port("audit.note", consumes="order.created")

    return Order


def settle(d: DeployHost) -> None:
    asyncio.run(d.host.idle(timeout=60))


@pytest.mark.slow
def test_republishing_under_load_fails_no_request_and_loses_nothing(d: DeployHost) -> None:
    host = d.host
    lock = threading.Lock()
    broker_events: Counter[str] = Counter()
    model_events: Counter[str] = Counter()

    def on_broker(event: Any) -> None:
        with lock:
            broker_events[event.model_id] += 1

    def on_model(event: Any) -> None:  # re-subscribed through every new class: replaced
        with lock:
            model_events[event.model_id] += 1

    host.events.on("order.created", on_broker)
    Order = make_order()
    host.publish(Order)
    Order.on("order.created", on_model)
    with under_load(d.api, threads=4) as load:
        wait_until(lambda: len(load.created) >= 20, timeout=30)
        for i in range(1, 7):
            extra = i >= 4  # the fourth republish adds a column under load
            if i % 2:
                r = d.deploy(order_source("extra: int = 7" if extra else ""))
                assert r.status_code == 201, r.text
            else:
                cls = make_order(extra=extra)
                host.publish(cls)
                cls.on("order.created", on_model)
            version = f"1.0.{i}"
            wait_until(lambda v=version: load.versions[v] >= 40, timeout=30)  # type: ignore[misc]
    settle(d)

    assert load.failures == [], load.failures[:5]
    assert load.requests >= 7 * 40
    assert set(load.versions) == {f"1.0.{i}" for i in range(7)}
    created = Counter(load.created)
    assert created and max(created.values()) == 1
    assert host.sql("SELECT count(*) FROM orders").rows == [(len(created),)]
    assert broker_events == created  # exactly one created event per create
    assert model_events == created  # Order.on through 4 classes: one subscription
    assert d.notes == created  # the port ran exactly once per event, after 6 republishes
    assert len(host.ports.orchestrator.subscriptions("Order")) == 1
    assert host.sql("SELECT count(*) FROM orders WHERE note_id IS NULL").rows == [(0,)]
    # Rows written by 1.0.0-1.0.3 while 1.0.4 added `extra` hold its default, not NULL.
    assert host.sql("SELECT count(*) FROM orders WHERE extra IS DISTINCT FROM 7").rows == [(0,)]
    config = host.config()["models"][0]
    assert config["active"] == "1.0.6" and config["deploys"] == 7
    assert config["routes"] == {"1.0.6": 100.0}


def test_in_flight_requests_finish_on_the_version_they_started_on(d: DeployHost) -> None:
    started, release = threading.Event(), threading.Event()

    class Order(Model, endpoint="orders"):
        total: float = 0.0

        async def on_update(self, changes: dict) -> dict:
            started.set()
            await asyncio.to_thread(release.wait, 10)
            return changes

    d.host.publish(Order)
    with httpx.Client(base_url=d.api, timeout=20) as api:
        order = api.post("/models/orders", json={}).json()
        answers: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: answers.append(
                api.patch(f"/models/orders/{order['id']}", json={"total": 5})
            )
        )
        slow.start()
        assert started.wait(10)
        r = d.deploy(order_source())  # 1.0.1 while the PATCH is inside 1.0.0's hook
        assert r.status_code == 201
        fresh = api.get(f"/models/orders/{order['id']}")
        assert fresh.status_code == 200 and fresh.headers["x-microlib-version"] == "1.0.1"
        release.set()
        slow.join(10)
    assert answers[0].status_code == 200
    assert answers[0].headers["x-microlib-version"] == "1.0.0"
    assert answers[0].json()["version"] == "1.0.0" and answers[0].json()["revision"] == 2


def test_requests_during_a_slow_publish_are_served_by_the_old_version(d: DeployHost) -> None:
    d.host.publish(make_order())
    slow_source = "import time\ntime.sleep(1.0)\n" + order_source()
    with httpx.Client(base_url=d.api, timeout=20) as api:
        order = api.post("/models/orders", json={}).json()
        outcome: list[httpx.Response] = []
        deploying = threading.Thread(target=lambda: outcome.append(d.deploy(slow_source)))
        deploying.start()
        served_meanwhile = []
        while deploying.is_alive():
            r = api.get(f"/models/orders/{order['id']}")
            if deploying.is_alive():
                served_meanwhile.append((r.status_code, r.headers["x-microlib-version"]))
        deploying.join(30)
    assert outcome[0].status_code == 201
    # The source ran off the loop: requests kept being answered by 1.0.0 meanwhile,
    # then by 1.0.1 once swapped in (never a mix after the swap, never an error).
    versions = [v for _, v in served_meanwhile]
    assert {s for s, _ in served_meanwhile} == {200}
    assert versions.count("1.0.0") >= 5
    assert versions == sorted(versions) and set(versions) <= {"1.0.0", "1.0.1"}


def test_refused_publishes_leave_the_old_version_serving(d: DeployHost) -> None:
    d.host.publish(make_order())
    with httpx.Client(base_url=d.api, timeout=20) as api:
        order = api.post("/models/orders", json={"total": 2}).json()
        broken = d.deploy(order_source() + "\nraise RuntimeError('boom')\n")
        assert broken.status_code == 400
        body = broken.json()
        assert body["error_type"] == "DeployRefused" and body["line"] == 9
        assert "RuntimeError: boom" in body["error"]
        required = d.deploy(order_source("customer: str"))  # rows exist, no default
        assert required.status_code == 400
        assert "customer" in required.json()["error"] and required.json()["line"] == 3
        narrowed = d.deploy(order_source().replace("total: float", "total: bool"))
        assert narrowed.status_code == 400 and order["id"] in narrowed.json()["error"]
        constrained = d.deploy(
            "from pydantic import Field\n"
            + order_source().replace("total: float = 0.0", "total: float = Field(0.0, ge=5)")
        )  # a constraint the stored total (2) fails is a type change too
        assert constrained.status_code == 400 and order["id"] in constrained.json()["error"]
        syntax = d.deploy("class Order(Model:\n")
        assert syntax.status_code == 400 and syntax.json()["line"] == 1
        nothing = d.deploy("x = 1\n")
        assert nothing.status_code == 400 and "defines no Model" in nothing.json()["error"]
        r = api.get(f"/models/orders/{order['id']}")
        assert r.status_code == 200 and r.headers["x-microlib-version"] == "1.0.0"
        assert r.json()["total"] == 2
    assert d.host.registry.get("order").versions.keys() == {"1.0.0"}


def test_rollback_routes_and_pinning_over_http(d: DeployHost) -> None:
    for _ in range(3):
        assert d.deploy(order_source()).status_code == 201  # 1.0.0, 1.0.1, 1.0.2
    with httpx.Client(base_url=d.api, timeout=20, headers=d.auth) as api:
        r = api.post("/deploy/order/rollback")
        assert r.status_code == 200 and r.json()["active"] == "1.0.1"
        assert api.post("/models/orders", json={}).headers["x-microlib-version"] == "1.0.1"
        r = api.post("/deploy/ORDER/rollback", json={"version": "1.0.0"})
        assert r.json()["routes"] == {"1.0.0": 100.0}
        r = api.post("/deploy/order/rollback")
        assert r.status_code == 400 and "no version before 1.0.0" in r.json()["error"]
        r = api.post("/deploy/order/rollback", json={"version": "7.0.0"})
        assert r.status_code == 404 and r.json()["versions"] == ["1.0.0", "1.0.1", "1.0.2"]
        assert api.post("/deploy/nothing/rollback").status_code == 404

        r = api.put("/deploy/Order/routes", json={"weights": {"1.0.1": 80, "1.0.2": 20}})
        assert r.status_code == 200 and r.json()["routes"] == {"1.0.1": 80.0, "1.0.2": 20.0}
        assert r.json()["active"] == "1.0.1"
        ids = [api.post("/models/orders", json={}).json() for _ in range(400)]
        by_version = Counter(o["version"] for o in ids)
        # 400 draws at p = 0.2: mean 80, sd 8; [50, 110] is beyond 3.5 sd each way.
        assert set(by_version) == {"1.0.1", "1.0.2"} and 50 <= by_version["1.0.2"] <= 110
        for o in ids[:50]:  # sticky: each id stays on the version that created it
            got = api.get(f"/models/orders/{o['id']}")
            assert got.headers["x-microlib-version"] == o["version"]
        pinned = api.get(f"/models/orders/{ids[0]['id']}", headers={"X-Microlib-Version": "1.0.0"})
        assert pinned.status_code == 200 and pinned.headers["x-microlib-version"] == "1.0.0"
        unknown = api.get("/models/orders", headers={"X-Microlib-Version": "3.1.4"})
        assert unknown.status_code == 404 and unknown.json()["error_type"] == "NotFound"
        assert "3.1.4" in unknown.json()["error"]

        for bad in ({"weights": {}}, {"weights": {"1.0.1": "a"}}, {"weights": {"1.0.1": -1}}, {}):
            r = api.put("/deploy/order/routes", json=bad)
            assert r.status_code == 400 and r.json()["error_type"] == "DeployRefused", bad
        assert api.put("/deploy/order/routes", json={"weights": {"9.9.9": 1}}).status_code == 404

        r = api.delete("/deploy/order")
        assert r.status_code == 200 and r.json()["active"] is None
        assert r.json()["published"] is False
        assert api.get("/models/orders").status_code == 404
        assert d.host.sql("SELECT count(*) FROM orders").rows == [(401,)]  # the data stays
        log = api.get("/deploy").json()["deployments"]
    assert [e["kind"] for e in log] == ["model"] * 3 + ["rollback"] * 2 + ["route", "unpublish"]
    assert all(e["who"] == "http 127.0.0.1" for e in log)
    assert log[5]["versions"] == ["1.0.1", "1.0.2"]


def test_weighted_picks_follow_the_weights(d: DeployHost) -> None:
    """``pick(id)`` over many ids: each version's share within statistical bounds."""
    for _ in range(3):
        d.host.publish(make_order())
    d.host.route("Order", {"1.0.0": 60, "1.0.1": 30, "1.0.2": 10})
    entry = d.host.registry.get("Order")
    n = 20_000
    shares = Counter(entry.pick(f"id-{i}").version for i in range(n))
    for version, weight in (("1.0.0", 0.6), ("1.0.1", 0.3), ("1.0.2", 0.1)):
        sd = (n * weight * (1 - weight)) ** 0.5
        assert abs(shares[version] - n * weight) < 5 * sd, shares
    assert all(entry.pick(f"id-{i}") is entry.pick(f"id-{i}") for i in range(200))
    unsticky = Counter(entry.pick(None).version for _ in range(n))  # no id: random
    assert abs(unsticky["1.0.2"] - n * 0.1) < 5 * (n * 0.1 * 0.9) ** 0.5, unsticky


def test_concurrent_deploys_get_distinct_versions_in_order(d: DeployHost) -> None:
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def deploy() -> None:
        r = d.deploy(order_source())
        with lock:
            results.append(r)

    threads = [threading.Thread(target=deploy) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [201] * 6
    versions = sorted(r.json()["published"][0]["version"] for r in results)
    assert versions == [f"1.0.{i}" for i in range(6)]
    entry = d.host.registry.get("Order")
    assert entry.active == "1.0.5" and entry.deploys == 6
    assert len(d.host.ports.orchestrator.subscriptions("Order")) == 1


def test_old_versions_beyond_keep_versions_are_dropped(tmp_path: Path) -> None:
    d = open_deploy_host(tmp_path, keep_versions=3)
    try:
        for _ in range(5):
            d.host.publish(make_order())
        d.host.route("Order", {"1.0.2": 50, "1.0.4": 50})
        d.host.publish(make_order())  # 1.0.5 takes every route: 1.0.2 may go now
        entry = d.host.registry.get("Order")
        assert list(entry.versions) == ["1.0.3", "1.0.4", "1.0.5"]
        r = httpx.get(f"{d.api}/models/orders", headers={"X-Microlib-Version": "1.0.1"})
        assert r.status_code == 404 and "1.0.3, 1.0.4, 1.0.5" in r.json()["error"]
        with pytest.raises(NotFound):
            d.host.rollback("Order", "1.0.0")
        assert d.host.rollback("Order")["active"] == "1.0.4"
    finally:
        d.host.close()
