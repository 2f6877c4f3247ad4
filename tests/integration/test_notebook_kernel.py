"""The notebook experience in real Jupyter kernels (jupyter_client), over real messages."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from microlib_kernel.cli import main as cli
from tests.notebook_support import Kernel

pytestmark = [pytest.mark.slow, pytest.mark.kernel]


ORDER = """%%microlib model
from pydantic import Field
from microlib_kernel import Model

class Order(Model, endpoint="orders"):
    items: list[dict] = Field(min_length=1)
    total: float = 0.0
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(tmp_path)
    try:
        yield k
    finally:
        k.close()


def test_model_cells_in_a_kernel(kernel: Kernel) -> None:
    loaded = kernel.ok("%load_ext microlib_kernel")
    lines = loaded.text().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("microlib: duckdb: ")

    published = kernel.ok(ORDER)
    [shown] = published.of("display_data")
    assert "published Order 1.0.0 at /orders" in shown["data"]["text/plain"]
    html = shown["data"]["text/html"]
    assert "<b>Order</b> 1.0.0" in html and "<td style='text-align:left'>items</td>" in html

    kernel.ok("o = await Order.create(items=[{'sku': 'a'}], total=4.0)")
    broken = kernel.run(ORDER + "    colour: str = 'red'\n\nraise RuntimeError('typo')\n")
    assert broken.status == "error" and broken.ename == "UsageError"
    assert broken.evalue == (
        "nothing published: the cell raised RuntimeError; Order 1.0.0 keeps serving"
    )
    [error] = broken.of("error")
    assert error["ename"] == "RuntimeError"  # the user's own traceback, as usual
    assert "UsageError: nothing published" in broken.text()
    assert kernel.value("Order.__microlib_runtime__.version") == "'1.0.0'"
    kernel.ok("found = await Order.find(o.id)")  # the next cell runs normally
    assert kernel.value("found.total") == "4.0"

    kernel.ok("wanted = 4.0")
    result = kernel.ok(
        "%%microlib sql -o res\nSELECT count(*) AS n FROM orders WHERE total = $wanted"
    )
    [table] = result.of("execute_result")
    assert "<table" in table["data"]["text/html"] and "1 row(s)" in table["data"]["text/plain"]
    assert kernel.value("res.rows") == "[(1,)]"


def test_reload_ext_leaves_no_thread_or_file_handle_behind(kernel: Kernel) -> None:
    kernel.ok("%load_ext microlib_kernel")
    kernel.ok(ORDER)
    probe = """
import collections, os, threading
def microlib_state():
    db = os.path.realpath('.microlib/microlib.duckdb')
    paths = [os.path.realpath(f'/proc/self/fd/{f}') for f in os.listdir('/proc/self/fd')]
    opened = collections.Counter(p for p in paths if p.startswith(db))
    hosts = [t for t in threading.enumerate() if t.name == 'microlib-host']
    return max(opened.values(), default=0), len(hosts)
"""
    kernel.ok(probe)
    assert kernel.value("microlib_state()") == "(1, 1)"
    for _ in range(3):
        kernel.ok("%reload_ext microlib_kernel")
        kernel.ok(ORDER)
    # One host thread, and no database file open twice: the old hosts let go of theirs.
    assert kernel.value("microlib_state()") == "(1, 1)"
    kernel.ok("%unload_ext microlib_kernel")
    assert kernel.value("microlib_state()") == "(0, 0)"
    kernel.ok("%load_ext microlib_kernel")
    kernel.ok(ORDER)
    assert "Order  1.0.0" in kernel.ok("%microlib status").text()


def test_a_kernel_shut_down_without_unloading_closes_its_host(tmp_path: Path) -> None:
    k = Kernel(tmp_path)
    try:
        k.ok("%load_ext microlib_kernel")
        k.ok(ORDER)
        k.ok("await Order.create(items=[{}])")
        lock = tmp_path / ".microlib" / "microlib.duckdb.lock"
        assert lock.read_text().startswith(k.value("__import__('os').getpid()"))
    finally:
        k.kc.stop_channels()
        k.km.shutdown_kernel(now=False)  # a polite shutdown, as JupyterLab asks for it
    assert lock.read_text() == ""  # released by the host's close at exit
    assert not (tmp_path / ".microlib" / "microlib.duckdb.wal").exists()  # checkpointed


def test_dashboard_updates_while_a_cell_runs(kernel: Kernel) -> None:
    kernel.ok("%load_ext microlib_kernel")
    kernel.ok(ORDER)
    opened = kernel.ok("board = %microlib dashboard")
    assert len(opened.of("comm_open")) >= 4  # the panel's widgets
    [view] = kernel.ok("board").of("execute_result")
    assert "application/vnd.jupyter.widget-view+json" in view["data"]
    busy_cell = """
import asyncio, threading, time
async def trickle():
    for i in range(5):
        await Order.create(items=[{'n': i}])
        await asyncio.sleep(0.3)
threading.Thread(target=lambda: asyncio.run(trickle())).start()
time.sleep(3)  # the kernel's main thread is busy all along
"""
    messages = kernel.iopub_during(busy_cell)
    started = messages[0][0]
    finished = messages[-1][0]
    updates = [
        (t, json.dumps(m["content"]["data"].get("state", {})))
        for t, m in messages
        if m["msg_type"] == "comm_msg"
    ]
    feed = [t for t, state in updates if "order.created" in state]
    assert feed, "the event feed never updated"
    assert feed[0] - started < 1.5 < finished - started  # live, not after the cell
    counts = [state for _, state in updates if "<td style='text-align:left'>5</td>" in state]
    assert counts, "the models table never showed the 5 new rows"
    closed = kernel.ok("board.close()\nprint(repr(board))")
    assert "closed" in closed.text()


def test_kernel_spec_loads_the_extension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["kernel", "install", "--user", "--name", "microlib-test"]) == 0
    out = capsys.readouterr().out
    assert "installed kernel spec microlib-test (MicroLib (Python 3))" in out
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("microlib-test")
    assert spec.display_name == "MicroLib (Python 3)"
    assert "--ext=microlib_kernel" in spec.argv
    k = Kernel(tmp_path, kernel_name="microlib-test")
    try:
        status = k.ok("%microlib status")  # no %load_ext: the kernel loaded it
        assert f"duckdb: {tmp_path}/.microlib/microlib.duckdb" in status.text()
        k.ok(ORDER)
    finally:
        k.close()


# -- with the HTTP server ------------------------------------------------------------------


@pytest.fixture
def serving_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    monkeypatch.setenv("MICROLIB_SERVE", "1")
    monkeypatch.setenv("MICROLIB_PORT", "0")  # any free port: tests never fight over 8707
    k = Kernel(tmp_path)
    try:
        yield k
    finally:
        k.close()


def api_url(kernel: Kernel) -> str:
    url = kernel.value(
        "__import__('microlib_kernel.notebook', fromlist=['x']).current_host().api_url"
    )
    return str(url.strip("'"))


def test_first_publish_serves_and_a_failed_cell_keeps_the_old_version(
    serving_kernel: Kernel,
) -> None:
    kernel = serving_kernel
    kernel.ok("%load_ext microlib_kernel")
    published = kernel.ok(ORDER)
    api = api_url(kernel)
    assert api.startswith("http://127.0.0.1:")
    assert f'href="{api}/models/orders"' in published.html()
    created = httpx.post(f"{api}/models/orders", json={"items": [{"sku": "a"}]}, timeout=10)
    assert created.status_code == 201
    broken = kernel.run(ORDER.replace("total: float", "total: int") + "\n1/0\n")
    assert broken.ename == "UsageError"
    listed = httpx.get(f"{api}/models/orders", timeout=10)
    assert listed.status_code == 200 and listed.headers["X-Microlib-Version"] == "1.0.0"
    assert [o["id"] for o in listed.json()] == [created.json()["id"]]


def test_reload_ext_frees_the_port(serving_kernel: Kernel) -> None:
    kernel = serving_kernel
    kernel.ok("%load_ext microlib_kernel")
    kernel.ok(ORDER)
    api = api_url(kernel)
    port = int(api.split(":")[2].split("/")[0])
    assert httpx.get(f"{api}/health", timeout=10).status_code == 200
    kernel.ok("%reload_ext microlib_kernel")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nobody listens any more
    kernel.ok(ORDER)  # the new host serves again, on a new port
    assert httpx.get(f"{api_url(kernel)}/models/orders", timeout=10).status_code == 200
