"""Flow leases on a real PostgreSQL database: a failing claim, a flow parked for others.

Each test has its own database (``tests/pg_support.py``), dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from tests.pg_support import temporary_database
from tests.ports_support import ADAPTERS, FlakyClaims, Services, order_model
from tests.services import wait_until

FLOW = ["authorize", "pick", "ship", "complete"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def _host(pg_url: str, tmp_path: Path, node: str, adapters: dict[str, Any]) -> Host:
    host = Host(
        settings=Settings.load(cwd=tmp_path, env={}, datasource=pg_url, node=node, lease_ttl=0.6)
    )
    try:
        Services().register(host)
        for name, fn in adapters.items():
            host.adapters.register(name, fn)
        host.publish(order_model())
    except BaseException:
        host.close()
        raise
    return host


def _approve(host: Host) -> str:
    Order = host.model("Order")

    async def go() -> str:
        order = await Order.create()
        await order.emit("order.approved")
        return str(order.id)

    return host.loop.run(go())


def _flow(pg_url: str, id: str) -> list[str]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT port_flow FROM orders WHERE id = %s", (id,)).fetchone()
    return list(row[0] or []) if row else []


def _leases(pg_url: str) -> list[str]:
    with psycopg.connect(pg_url) as conn:
        return [r[0] for r in conn.execute("SELECT key FROM microlib_leases").fetchall()]


def test_an_event_triggered_port_retries_a_failing_claim(pg_url: str, tmp_path: Path) -> None:
    host = _host(pg_url, tmp_path, "a", ADAPTERS)
    try:
        leases = host.ports.leases
        leases.claim_delays = (0.01, 0.05, 0.1)
        flaky = leases.store = FlakyClaims(leases.store)
        flaky.failures = 2  # the first two claims fail; the third (a retry) works
        id = _approve(host)
        wait_until(lambda: _flow(pg_url, id) == FLOW, 10, "the flow running to its end")
        assert flaky.claims == 3 and leases.claims_failed == 0
        assert _leases(pg_url) == []  # finished: released

        # More failures than the retries: the event is handed to the reaper. The claims
        # keep failing (the reaper's too) until the database is "back": checking that
        # nothing ran must not race the reaper's next round (every lease_ttl / 2).
        flaky.failures = 10_000
        id = _approve(host)
        wait_until(lambda: leases.claims_failed >= 1, 10, "the claim giving up")
        wait_until(lambda: leases.claims_failed >= 2, 10, "the reaper trying again, failing")
        assert _flow(pg_url, id) == [] and _leases(pg_url) == []  # nothing ran, nothing held
        flaky.failures = 0
        wait_until(lambda: _flow(pg_url, id) == FLOW, 10, "the reaper retrying the flow")
        assert leases.waiting == 0
    finally:
        host.close()


def test_a_flow_stuck_on_one_host_is_parked_and_runs_on_another(
    pg_url: str, tmp_path: Path
) -> None:
    # Host a has no inventory adapters: its order flow stops before "pick" and waits.
    partial = {k: v for k, v in ADAPTERS.items() if not k.startswith("inventory.")}
    a = _host(pg_url, tmp_path, "a", partial)
    b: Host | None = None
    try:
        id = _approve(a)
        wait_until(lambda: _flow(pg_url, id) == ["authorize"], 10, "the first step on a")
        assert _leases(pg_url) == [f"orders/{id}"]  # a waits for its next step
        # After idle_renewals renewals (about lease_ttl) a gives the flow up...
        wait_until(lambda: _leases(pg_url) == [], 10, "a parking the flow")
        assert a.ports.leases.parked == 1
        # ...so a host that can run it takes it at start-up, while a still lives.
        b = _host(pg_url, tmp_path, "b", ADAPTERS)
        wait_until(lambda: _flow(pg_url, id) == FLOW, 15, "b running the rest of the flow")
        wait_until(lambda: _leases(pg_url) == [], 10, "b releasing the finished flow")
    finally:
        a.close()
        if b is not None:
            b.close()
