"""Two hosts on one PostgreSQL database, joined by a bus: reads are fresh everywhere.

Without a bus each host's instance cache would keep serving what it read first (the
control test shows it); with one, a write through one host evicts the copy in the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from tests.http_support import ITEMS
from tests.models import make_models
from tests.pg_support import temporary_database
from tests.services import NATS_URL, require, wait_until


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def _serve(pg_url: str, tmp_path: Path, **settings: Any) -> tuple[Host, httpx.Client]:
    host = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=pg_url, **settings))
    try:
        order, customer = make_models()
        host.publish(customer)
        host.publish(order)
        host.serve(port=0)
    except BaseException:
        host.close()
        raise
    return host, httpx.Client(base_url=f"{host.api_url}", timeout=10)


@pytest.fixture(params=["memory", "nats"])
def bus(request: pytest.FixtureRequest) -> str:
    if request.param == "nats":
        require("NATS", "127.0.0.1", 4222)
        return NATS_URL
    return f"memory://{uuid.uuid4().hex}"


def test_without_a_bus_the_other_host_serves_its_cached_copy(pg_url: str, tmp_path: Path) -> None:
    a, api_a = _serve(pg_url, tmp_path)
    b, api_b = _serve(pg_url, tmp_path)
    try:
        made = api_a.post("/models/orders", json={"items": ITEMS}).json()
        assert api_b.get(f"/models/orders/{made['id']}").json()["revision"] == 1  # b caches it
        api_a.patch(f"/models/orders/{made['id']}", json={"total": 5})
        assert api_b.get(f"/models/orders/{made['id']}").json()["total"] == 0.0  # stale
    finally:
        for host, client in ((a, api_a), (b, api_b)):
            client.close()
            host.close()


def test_a_write_through_one_host_is_read_fresh_through_the_other(
    pg_url: str, tmp_path: Path, bus: str
) -> None:
    cluster = f"t{uuid.uuid4().hex[:10]}"
    a, api_a = _serve(pg_url, tmp_path, bus=bus, bus_cluster=cluster, node="a")
    b, api_b = _serve(pg_url, tmp_path, bus=bus, bus_cluster=cluster, node="b")
    try:
        made = api_a.post("/models/orders", json={"items": ITEMS}).json()
        oid = made["id"]
        assert api_b.get(f"/models/orders/{oid}").json()["revision"] == 1
        for n in range(2, 6):
            api_a.patch(f"/models/orders/{oid}", json={"total": float(n)})
            # The invalidation travels asynchronously; the window is what the bench measures.
            wait_until(
                lambda n=n: api_b.get(f"/models/orders/{oid}").json()["revision"] == n,
                5,
                f"b reading revision {n}",
            )
        # Writes through b reach a the same way; deletes too.
        api_b.patch(f"/models/orders/{oid}", json={"status": "CANCELED"})
        url = f"/models/orders/{oid}"
        wait_until(lambda: api_a.get(url).json()["status"] == "CANCELED", 5, "a seeing it")
        api_a.delete(f"/models/orders/{oid}")
        wait_until(lambda: api_b.get(url).status_code == 404, 5, "b seeing it gone")
        assert b.cluster is not None and b.cluster.describe()["invalidations"] >= 5
    finally:
        for host, client in ((a, api_a), (b, api_b)):
            client.close()
            host.close()
        if bus.startswith("nats://"):
            from tests.integration.test_bus import _drop_cluster

            _drop_cluster(bus, cluster)
