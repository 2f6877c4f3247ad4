"""End to end: `microlib serve` a notebook, `microlib deploy` new versions into it, drain, crash.

Every process is a real subprocess on loopback, ended by PID; every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve_support import (
    MICROLIB,
    ORDERS,
    Served,
    creates_until_killed,
    start_serve,
    stop,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def microlib(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MICROLIB, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A service folder with its own copy of the example notebook."""
    shutil.copy(ORDERS, tmp_path / "orders_service.ipynb")
    return tmp_path


@pytest.fixture
def served(workdir: Path) -> Iterator[Served]:
    s = start_serve(workdir, "orders_service.ipynb")
    yield s
    stop(s.proc)


def active(api: str, name: str = "Order") -> str | None:
    models = httpx.get(f"{api}/config", timeout=10).json()["models"]
    return next(m["active"] for m in models if m["name"] == name)


def test_serve_deploy_and_a_failing_deploy_rolls_back(workdir: Path, served: Served) -> None:
    r = httpx.post(
        f"{served.api}/models/orders",
        json={"customer_id": "c1", "items": [{"price": 10, "qty": 1}]},
        timeout=10,
    )
    assert r.status_code == 201 and r.headers["X-Microlib-Version"] == "1.0.0"
    assert r.json()["total"] == 12.0
    assert httpx.get(f"{served.api}/health", timeout=10).json()["status"] == "ok"

    ok = microlib(workdir, "deploy", "orders_service.ipynb", "--to", served.url, "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert "Order 1.0.1" in ok.stdout
    assert active(served.api) == "1.0.1"
    got = httpx.get(f"{served.api}/models/orders/{r.json()['id']}", timeout=10)
    assert got.status_code == 200 and got.headers["X-Microlib-Version"] == "1.0.1"

    bad = microlib(
        workdir,
        "deploy",
        "orders_service.ipynb",
        "--to",
        served.url,
        "--no-progress",
        "-p",
        "fail_check",
        "true",
    )
    assert bad.returncode == 1
    assert "failed at cell 8" in bad.stderr and "AssertionError" in bad.stderr
    assert "rolled back Order → 1.0.1" in bad.stderr
    assert active(served.api) == "1.0.1"  # the run's 1.0.2 is not serving
    records = sorted((workdir / ".microlib" / "deployments").glob("*.ipynb"))
    assert len(records) == 3  # serve's own deployment, the good one, the failed one
    import nbformat

    meta = nbformat.read(str(records[-1]), as_version=4).metadata["microlib"]
    assert (
        meta["ok"] is False
        and meta["failed_cell"] == 8
        and meta["parameters"]["fail_check"] is True
    )
    assert [p["version"] for p in meta["published"] if p["name"] == "Order"] == ["1.0.2"]


def test_deploy_needs_the_token(
    workdir: Path, served: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("no-token")
    shutil.copy(ORDERS, elsewhere / "orders_service.ipynb")
    out = microlib(elsewhere, "deploy", "orders_service.ipynb", "--to", served.url, "--no-progress")
    assert out.returncode == 1 and "no deploy token" in out.stderr
    wrong = microlib(
        elsewhere,
        "deploy",
        "orders_service.ipynb",
        "--to",
        served.url,
        "--token",
        "wrong",
        "--no-progress",
    )
    assert wrong.returncode == 1
    assert active(served.api) == "1.0.0"


def test_sigterm_under_load_drains_without_failed_requests(workdir: Path, served: Served) -> None:
    """Clients behave like a load balancer: once answers say the host is draining
    (``Connection: close``), they send it no new work. Every request sent gets its answer."""
    failures: list[str] = []
    answered = 0
    refused = 0
    drained = 0
    stop_load = threading.Event()
    lock = threading.Lock()

    def load() -> None:
        nonlocal answered, refused, drained
        with httpx.Client(timeout=10) as client:
            while not stop_load.is_set():
                try:
                    r = client.post(
                        f"{served.api}/models/orders",
                        json={"customer_id": "c", "items": [{"price": 1}]},
                    )
                except httpx.ConnectError:
                    with lock:
                        refused += 1  # the listener is closed: the request never started
                    time.sleep(0.01)
                    continue
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    answered += 1
                if r.status_code != 201:
                    failures.append(f"{r.status_code}: {r.text[:200]}")
                if r.headers.get("connection") == "close":
                    with lock:
                        drained += 1
                    return  # the host is draining: route new work elsewhere

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(served.proc.pid, signal.SIGTERM)
    code = served.proc.wait(30)
    stop_load.set()
    for t in threads:
        t.join(15)
    assert code == 0
    assert answered > 20
    assert drained == len(threads)  # every client was told, while it was still served
    assert failures == []
    assert any("draining" in ln for ln in served.lines) and any(
        "stopped" in ln for ln in served.lines
    )


def test_sigkill_during_creates_then_restart_keeps_every_acknowledged_create(workdir: Path) -> None:
    first = start_serve(workdir, "orders_service.ipynb")
    acknowledged = creates_until_killed(first)
    assert len(acknowledged) > 50
    second = start_serve(workdir, "orders_service.ipynb")
    try:
        with httpx.Client(timeout=10) as client:
            rows = client.post(
                f"{second.api}/sql", json={"sql": "SELECT id FROM orders WHERE customer_id = 'k'"}
            ).json()
        stored = {row[0] for row in rows["rows"]}
        missing = [i for i in acknowledged if i not in stored]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged creates lost"
    finally:
        stop(second.proc)


def test_two_teams_notebooks_in_one_host(workdir: Path) -> None:
    """The second team's notebook deploys beside the first; its relation reaches the
    first team's model in the same process."""
    shutil.copy(ROOT / "notebooks" / "customers_service.ipynb", workdir / "customers_service.ipynb")
    s = start_serve(workdir, "orders_service.ipynb", "customers_service.ipynb")
    try:
        with httpx.Client(base_url=s.api, timeout=10) as api:
            customer = api.post("/models/customers", json={"name": "ada", "tier": "gold"}).json()
            for price in (1, 2):
                r = api.post(
                    "/models/orders",
                    json={"customer_id": customer["id"], "items": [{"price": price}]},
                )
                assert r.status_code == 201
            orders = api.get(f"/models/customers/{customer['id']}/orders").json()
            assert sorted(o["total"] for o in orders) == [1.2, 2.4]
            names = {m["name"]: m["active"] for m in api.get("/config").json()["models"]}
            assert names == {"Order": "1.0.0", "Customer": "1.0.0"}
    finally:
        stop(s.proc)
