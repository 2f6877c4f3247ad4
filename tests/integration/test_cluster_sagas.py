"""Flows across hosts on one PostgreSQL database: one owner per flow, takeover on death.

Host A runs an order's flow and is SIGKILLed inside its second port. Host B, alive
all along, leaves the flow alone while A renews its lease, refuses to run the
instance's ports meanwhile, and takes the flow over once A's lease expires: the port
in flight at the kill runs again, the completed one does not.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from microlib_kernel.errors import FlowElsewhere
from tests.integration.test_port_resume import kill
from tests.pg_support import temporary_database
from tests.ports_support import Services, order_model, register_adapters

pytestmark = pytest.mark.anyio
ROOT = str(Path(__file__).resolve().parents[2])
TTL = 1.5

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from microlib_kernel import Host
    from microlib_kernel.config import Settings
    from tests.ports_support import Services, order_model, register_adapters

    async def main():
        host = Host(settings=Settings.load(datasource={url!r}, node="a", lease_ttl={ttl}))
        services = Services()
        services.register(host)
        register_adapters(host)
        services.inventory.set("pick", "hang")

        class Tell(list):
            def append(self, item):
                super().append(item)
                print(item, flush=True)

        services.journal = services.payments.journal = services.inventory.journal = Tell()
        Order = order_model()
        host.publish(Order)
        order = await Order.create()
        print(order.id, flush=True)
        await order.emit("order.approved")
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def read_lines(child: subprocess.Popen[str]) -> list[str]:
    """The child's output lines, collected by a thread (a silent child cannot hang us)."""
    lines: list[str] = []

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    return lines


def leases(pg_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT key, owner FROM microlib_leases ORDER BY key").fetchall()


@pytest.mark.slow
async def test_a_dead_hosts_flow_is_taken_over_once(pg_url: str, tmp_path: Path) -> None:
    b = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=pg_url, node="b",
                                    lease_ttl=TTL))  # fmt: skip
    services = Services()
    services.register(b)
    register_adapters(b)
    Order = order_model()
    b.publish(Order)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=ROOT, url=pg_url, ttl=TTL)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = read_lines(child)
        deadline = time.monotonic() + 60
        while "inventory.pick" not in lines and time.monotonic() < deadline:
            if child.poll() is not None:
                break
            time.sleep(0.05)
        if "inventory.pick" not in lines:
            kill(child)
            raise AssertionError(f"host a did not reach inventory.pick: {lines}")
        order_id = next(ln for ln in lines if re.fullmatch(r"[0-9a-f]{32}", ln))
        assert leases(pg_url) == [(f"orders/{order_id}", "a")]

        # A is alive and renewing: B leaves the flow alone for several lease periods,
        # and will not run the instance's ports itself.
        time.sleep(3 * TTL)
        assert services.journal == []
        order = await Order.find(order_id)
        with pytest.raises(FlowElsewhere):
            await order.pick()
    finally:
        kill(child)  # inside inventory.pick, which never returned

    deadline = time.monotonic() + 10 * TTL
    while time.monotonic() < deadline:
        if (await Order.find(order_id)).status == "COMPLETE":
            break
        time.sleep(0.1)
    try:
        await b.idle()
        done = await Order.find(order_id)
        assert done.port_flow == ["authorize", "pick", "ship", "complete"]
        # authorize completed on A: never again; pick was in flight at the kill: once more.
        assert services.journal == ["inventory.pick", "shipping.ship"]
        assert b.ports.leases.taken_over == 1
        assert leases(pg_url) == []  # released once the flow had nothing left to run
    finally:
        b.close()
