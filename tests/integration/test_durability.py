"""Durability on a real DuckDB file: restarts, a killed writer, a second writer process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from microlib_kernel import DatasourceLocked, Host
from tests.models import make_models

pytestmark = pytest.mark.anyio

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from microlib_kernel import Host
    from tests.models import make_models

    async def main():
        host = Host({url!r})
        Order, _ = make_models()
        host.publish(Order)
        print("ready", flush=True)
        {body}

    asyncio.run(main())
    """
)
ROOT = str(Path(__file__).resolve().parents[2])


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a child by PID and close its pipes."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def spawn(url: str, body: str, cwd: Path) -> subprocess.Popen[str]:
    code = CHILD.format(
        root=ROOT, url=url, body=textwrap.indent(textwrap.dedent(body).strip(), "    ").strip()
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        err = proc.stderr.read() if proc.stderr else ""
        stop(proc)
        raise AssertionError(f"child failed: {line}{err}")
    return proc


async def test_restart_keeps_ids_fields_timestamps_and_emits_no_created(tmp_path: Path) -> None:
    url = "duckdb:///data/app.duckdb"
    host = Host(url)
    Order, Customer = make_models()
    host.publish(Customer)
    host.publish(Order)
    c = await Customer.create(name="ada", address={"city": "Oslo", "zip": 7}, tags=["a", "b"])
    o = await Order.create(items=[{"sku": "x", "price": 2.5}], customer_id=c.id)
    o = await o.update(status="APPROVED")
    host.close()

    again = Host(url)
    created = []
    again.events.on("*.created", lambda e: created.append(e))
    Order2, Customer2 = make_models()
    again.publish(Customer2)
    again.publish(Order2)
    o2 = await Order2.find(o.id)
    c2 = await Customer2.find(c.id)
    assert o2.model_dump() == o.model_dump()
    assert c2.model_dump() == c.model_dump()
    assert o2.created_at == o.created_at and o2.updated_at == o.updated_at
    assert await Order2.count() == 1
    await again.idle()
    assert created == []
    again.close()


@pytest.mark.slow
def test_second_writer_process_is_refused_with_its_pid(tmp_path: Path) -> None:
    proc = spawn("duckdb:///shared.duckdb", "await asyncio.sleep(60)", tmp_path)
    try:
        with pytest.raises(DatasourceLocked, match=rf"in use by another process \(pid {proc.pid}"):
            Host("duckdb:///shared.duckdb")
    finally:
        stop(proc)
    # The kernel released the dead holder's lock: the file opens now.
    Host("duckdb:///shared.duckdb").close()


def test_second_host_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = Host("duckdb:///one.duckdb")
    try:
        with pytest.raises(DatasourceLocked, match="another Host in this process"):
            Host("duckdb:///one.duckdb")
    finally:
        first.close()
    Host("duckdb:///one.duckdb").close()


GATHERED = """
    n = 0
    while True:
        batch = await asyncio.gather(
            *[Order.create(items=[{"n": n + i}], total=n + i) for i in range(50)]
        )
        for o in batch:
            print(o.id, flush=True)   # printed only after the create was acknowledged
        n += 50
    """
# One at a time: each create commits alone, on the caller's thread (a direct write on
# the store's row cursor), not through the writer thread.
ONE_BY_ONE = """
    n = 0
    while True:
        o = await Order.create(items=[{"n": n}], total=n)
        print(o.id, flush=True)
        n += 1
    """


@pytest.mark.slow
@pytest.mark.parametrize("body", [GATHERED, ONE_BY_ONE], ids=["gathered", "one-by-one"])
async def test_sigkill_loses_no_acknowledged_write(tmp_path: Path, body: str) -> None:
    proc = spawn("duckdb:///killed.duckdb", body, tmp_path)
    acknowledged: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline or len(acknowledged) < 200:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
        if time.monotonic() > deadline + 10:
            break
    stop(proc)
    assert len(acknowledged) >= 200
    host = Host("duckdb:///killed.duckdb")
    try:
        Order, _ = make_models()
        host.publish(Order)
        stored = {r[0] for r in host.sql("SELECT id FROM orders").rows}
        missing = [i for i in acknowledged if i not in stored]
        assert not missing, f"{len(missing)} acknowledged creates lost"
        assert len(stored) >= len(acknowledged)
    finally:
        host.close()
