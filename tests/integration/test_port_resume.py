"""Resume after a restart, on a real DuckDB file: flows and sagas continue, nothing runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from microlib_kernel import Host
from tests.ports_support import Services, event_names, order_model, register_adapters

pytestmark = pytest.mark.anyio
ROOT = str(Path(__file__).resolve().parents[2])
URL = "duckdb:///flows.duckdb"


def start(url: str = URL, **options: dict) -> tuple[Host, Services, type]:
    host = Host(url)
    services = Services()
    services.register(host)
    register_adapters(host)
    Order = order_model(**options)
    host.publish(Order)
    return host, services, Order


async def test_an_interrupted_flow_resumes_from_its_last_completed_port() -> None:
    # Host A stops after the first port (the next one is disabled in its version).
    host, services, Order = start(pick={"disabled": True})
    order = await Order.create()
    await order.emit("order.approved")
    await host.idle()
    assert (await Order.find(order.id)).port_flow == ["authorize"]
    done = await Order.create()
    await done.emit("order.approved")  # also stops after authorize ...
    await host.idle()
    host.close()

    # Host B serves a version where the flow goes on: the first publish resumes it.
    host, services, Order = start()
    try:
        await host.idle()
        resumed = await Order.find(order.id)
        assert resumed.port_flow == ["authorize", "pick", "ship", "complete"]
        assert resumed.status == "COMPLETE"
        # authorize completed on host A: it never runs again.
        assert services.journal.count("payments.authorize") == 0
        assert services.journal.count("inventory.pick") == 2  # one per instance
        # A second publish in the same process resumes nothing again.
        host.publish(order_model())
        await host.idle()
        assert services.journal.count("inventory.pick") == 2
    finally:
        host.close()


async def test_complete_and_compensated_flows_are_not_resumed() -> None:
    host, services, Order = start(ship={"retries": 0})
    services.shipping.set("ship", "fail")
    failed = await Order.create()
    await failed.emit("order.approved")
    services_ok = await Order.create()
    await host.idle()
    services.shipping.set("ship", "ok")
    await services_ok.emit("order.approved")
    await host.idle()
    host.close()

    host, services, Order = start()
    try:
        await host.idle()
        assert services.journal == []
        assert (await Order.find(failed.id)).compensation == "complete"
        assert (await Order.find(services_ok.id)).status == "COMPLETE"
    finally:
        host.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from microlib_kernel import Host
    from tests.ports_support import Services, order_model, register_adapters

    async def main():
        host = Host({url!r})
        services = Services()
        services.register(host)
        register_adapters(host)
        services.inventory.set("pick", "hang")
        journal = services.journal

        class Tell(list):
            def append(self, item):
                super().append(item)
                print(item, flush=True)

        services.journal = services.payments.journal = services.inventory.journal = Tell(journal)
        Order = order_model()
        host.publish(Order)
        order = await Order.create()
        print(order.id, flush=True)
        await order.emit("order.approved")
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.mark.slow
async def test_a_killed_host_resumes_the_flow_on_restart(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=ROOT, url=URL)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 60
        while "inventory.pick" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        assert "inventory.pick" in lines, proc.stderr.read() if proc.stderr else lines
        order_id = lines[0]
    finally:
        kill(proc)  # the second adapter never returned: the process dies mid-flow

    host, services, Order = start()
    try:
        await host.idle()
        order = await Order.find(order_id)
        assert order.port_flow == ["authorize", "pick", "ship", "complete"]
        assert services.journal == ["inventory.pick", "shipping.ship"]  # no second authorize
        resumed = host.events.recent("payment.authorized")
        assert resumed and resumed[0].data["resumed"] is True
    finally:
        host.close()


@pytest.mark.slow
async def test_a_running_compensation_continues_after_a_restart() -> None:
    host, services, Order = start()
    services.shipping.set("ship", "fail")
    services.payments.set("cancel", "hang")  # the saga stops in its last undo
    order = await Order.create()
    await order.emit("order.approved")
    deadline = time.monotonic() + 10
    while "payments.cancel" not in services.journal and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    stuck = await Order.find(order.id)
    assert stuck.compensation == "running" and stuck.port_flow == ["authorize"]
    host.close()  # waits for the handlers a while, then cancels the hung undo

    host, services, Order = start()
    try:
        await host.idle()
        after = await Order.find(order.id)
        assert after.compensation == "complete" and after.port_flow == []
        # The undo in flight at the stop runs again; restock, recorded as done, does not.
        assert services.journal == ["payments.cancel"]
        started = host.events.recent("order.undo.started")[0]
        assert started.data["reason"] == "resumed after a restart"
        assert "order.undo.worked" in event_names(host)
    finally:
        host.close()


@pytest.mark.slow
async def test_a_flow_stuck_in_a_hung_adapter_completes_on_the_next_host() -> None:
    host, services, Order = start()
    services.inventory.set("pick", "hang")  # the second adapter never returns
    order = await Order.create()
    await order.emit("order.approved")
    deadline = time.monotonic() + 10
    while "inventory.pick" not in services.journal and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    host.close()  # waits a while for the handlers, then cancels the hung call: no write
    stuck_flow = ["authorize"]

    host, services, Order = start()
    try:
        await host.idle()
        order = await Order.find(order.id)
        assert order.port_flow == [*stuck_flow, "pick", "ship", "complete"]
        assert order.status == "COMPLETE" and order.compensation is None
        assert services.journal == ["inventory.pick", "shipping.ship"]
    finally:
        host.close()
