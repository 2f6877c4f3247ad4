"""Inbound ports over real HTTP with the real port runner: 200, 404, 502, 503, 504."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from microlib_kernel import Host, Model, port


@pytest.fixture
def served(host: Host) -> Iterator[tuple[Host, httpx.Client]]:

    class Parcel(Model, endpoint="parcels"):
        note: str = ""
        receive = port("inbox.receive", type="inbound")
        broken = port("inbox.broken", type="inbound")
        slow = port("inbox.slow", type="inbound", timeout=0.2)
        guarded = port(
            "inbox.broken",
            type="inbound",
            circuit_breaker={"calls": 2, "error_rate": 50, "window": 60, "cooldown": 60},
        )
        outbound = port("inbox.receive")

    async def receive(parcel: Model, note: str) -> dict:
        return {"note": note}

    def broken(parcel: Model) -> dict:
        raise RuntimeError("the courier dropped it")

    async def slow(parcel: Model) -> dict:
        await asyncio.sleep(5)
        return {}

    for name, fn in (("receive", receive), ("broken", broken), ("slow", slow)):
        host.adapters.register(f"inbox.{name}", fn)
    host.publish(Parcel)
    url = host.serve(port=0)
    with httpx.Client(base_url=f"{url}/microlib/api", timeout=20) as client:
        yield host, client


def test_inbound_ports_over_http(served: tuple[Host, httpx.Client]) -> None:
    _, api = served
    parcel = api.post("/models/parcels", json={}).json()
    base = f"/models/parcels/{parcel['id']}/ports"

    r = api.post(f"{base}/receive", json={"note": "hello"})
    assert r.status_code == 200, r.text
    assert r.json()["note"] == "hello" and r.json()["port_flow"] == ["receive"]
    assert r.headers["x-microlib-version"] == "1.0.0"

    assert api.post(f"{base}/outbound", json={"note": "x"}).status_code == 404  # not inbound
    assert api.post(f"{base}/nothing", json={}).status_code == 404
    assert api.post("/models/parcels/missing/ports/receive", json={"note": "x"}).status_code == 404
    assert api.post(f"{base}/receive", json={"colour": "red"}).status_code == 400  # bad kwargs

    r = api.post(f"{base}/broken", json={})
    assert r.status_code == 502 and "courier" not in r.text  # no internals leak
    assert set(r.json()) >= {"error", "error_id"}

    r = api.post(f"{base}/slow", json={})
    assert r.status_code == 504

    # The breaker opens after two failures in the window; then it fails fast (503).
    for _ in range(2):
        api.post(f"{base}/guarded", json={})
    r = api.post(f"{base}/guarded", json={})
    assert r.status_code == 503, r.text
    entry = next(m for m in api.get("/config").json()["models"] if m["name"] == "Parcel")
    assert entry["ports"]["guarded"]["breaker"]["state"] == "open"
