"""The HTTP API of hosts on a PostgreSQL datasource, end to end over loopback.

One host: create, get, list, update, a stale ``If-Match`` (409), SQL in PostgreSQL's
dialect. Two hosts on one database (as behind a load balancer): a write based on a
copy the other host made stale is a 409 decided by the database, and a retry after
that reads the fresh row and succeeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from tests.http_support import ITEMS, Served
from tests.models import make_models
from tests.pg_support import temporary_database


def serve_on(url: str, tmp_path: Path) -> Served:
    host = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url))
    order, customer = make_models()
    try:
        host.publish(customer)
        host.publish(order)
        base = host.serve(port=0)
    except BaseException:
        host.close()
        raise
    return Served(host, base, f"{base}{host.settings.api_root}", {"Order": order})


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


@pytest.fixture
def api(pg_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    # The server trusts loopback, so the password is not checked: only never shown.
    served = serve_on(pg_url.replace("postgres@", "postgres:s3cret-pw@"), tmp_path)
    try:
        with httpx.Client(base_url=served.api, timeout=10) as client:
            yield client
    finally:
        served.host.close()


def test_crud_conflict_list_and_sql_over_http(api: httpx.Client, pg_url: str) -> None:
    r = api.post("/models/orders", json={"items": ITEMS, "total": 3.5})
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["revision"] == 1 and r.headers["Location"].endswith(order["id"])
    r = api.get(f"/models/orders/{order['id']}")
    assert r.status_code == 200 and r.json()["items"] == ITEMS
    r = api.patch(f"/models/orders/{order['id']}", json={"status": "APPROVED"})
    assert r.status_code == 200 and r.json()["revision"] == 2
    r = api.patch(
        f"/models/orders/{order['id']}", json={"status": "SHIPPING"}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 409, r.text
    for n in range(3):
        assert (
            api.post("/models/orders", json={"items": ITEMS, "total": float(n)}).status_code == 201
        )
    r = api.get("/models/orders", params={"status": "PENDING", "__order": "-total"})
    assert [o["total"] for o in r.json()] == [2.0, 1.0, 0.0]
    assert api.get("/models/orders", params={"__count": "all"}).json() == {"total": 4}
    r = api.post(
        "/sql",
        json={
            "sql": "SELECT status, count(*) AS n, sum(total) AS total, "
            "max(items->0->>'sku') AS sku FROM orders GROUP BY status ORDER BY status",
            "params": {},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "columns": ["status", "n", "total", "sku"],
        "rows": [["APPROVED", 1, 3.5, "a"], ["PENDING", 3, 3.0, "a"]],
    }
    r = api.post("/sql", json={"sql": "DELETE FROM orders"})
    assert r.status_code == 400 and "read-only" in r.json()["error"]
    r = api.post("/sql", json={"sql": "SELECT nope FROM orders"})
    assert r.status_code == 400 and "nope" in r.json()["error"]
    r = api.get("/models/customers", params={"name": "a\x00b"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]
    r = api.post("/models/customers", json={"name": "a\x00b"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]
    config = api.get("/config")
    assert all(m["datasource"].startswith("postgresql://") for m in config.json()["models"])
    assert "s3cret-pw" not in config.text and "postgres:***@" in config.text


def test_two_hosts_on_one_database_refuse_a_stale_write(pg_url: str, tmp_path: Path) -> None:
    a = serve_on(pg_url, tmp_path / "a")
    b = serve_on(pg_url, tmp_path / "b")
    try:
        with httpx.Client(timeout=10) as client:
            order = client.post(f"{a.api}/models/orders", json={"items": ITEMS}).json()
            path = f"/models/orders/{order['id']}"
            assert client.get(f"{b.api}{path}").json()["revision"] == 1  # b caches revision 1
            r = client.patch(f"{a.api}{path}", json={"status": "APPROVED"})
            assert r.status_code == 200 and r.json()["revision"] == 2
            r = client.patch(f"{b.api}{path}", json={"status": "CANCELED"})
            assert r.status_code == 409, r.text  # b's copy was stale: the database said so
            r = client.patch(f"{b.api}{path}", json={"status": "CANCELED"})
            assert r.status_code == 200, r.text  # the retry read the fresh row
            assert r.json()["revision"] == 3
            assert client.get(f"{a.api}/models/orders", params={"__count": "all"}).json() == {
                "total": 1
            }
    finally:
        a.host.close()
        b.host.close()


@pytest.mark.slow
def test_fuzzed_api_on_postgres_never_answers_5xx(pg_url: str, tmp_path: Path) -> None:
    """The schemathesis run of ``test_openapi_fuzz.py``, on a PostgreSQL host."""
    from schemathesis import GenerationMode

    from tests.integration.test_openapi_fuzz import fuzz

    served = serve_on(pg_url, tmp_path)
    try:
        sent, failures = fuzz(served, 20, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
    finally:
        served.host.close()
    assert sent > 300
    assert not failures, "\n\n".join(failures)
