"""microlib serve against Jupyter Kernel Gateway's notebook-http mode, same run.

Both serve an equivalent orders service from a notebook:

* microlib: ``microlib serve notebooks/orders_service.ipynb`` (papermill deploys it
  into a standalone host; REST API generated from the model).
* Kernel Gateway: ``jupyter kernelgateway --KernelGatewayApp.api=kernel_gateway.notebook_http``
  with a notebook whose ``# POST /orders`` / ``# GET /orders/:id`` cells keep orders in
  a dict, the way notebook-http services are written.

Measured: cold start (process start to the first 200 of the orders list; target ≤ 0.7×
Kernel Gateway's) and GET by id at 32 concurrent requests for a few seconds (target ≥ 50×).
Kernel Gateway is installed into its own virtualenv under ``bench/out/`` the first time
(it says so on stderr); the project's environment is not touched.

``python bench/kernel_gateway.py [--quick]``
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import Result  # noqa: E402

COMMAND = "python bench/kernel_gateway.py"
KG_VENV = HERE / "out" / "kg-venv"
ORDERS_NB = ROOT / "notebooks" / "orders_service.ipynb"

KG_CELLS = [
    "import json, uuid\nORDERS = {}",
    "# POST /orders\nreq = json.loads(REQUEST)\nbody = req.get('body') or {}\n"
    "items = body.get('items') or []\n"
    "net = sum(float(i.get('price', 0)) * int(i.get('qty', 1)) for i in items)\n"
    "oid = uuid.uuid4().hex\n"
    "ORDERS[oid] = {**body, 'id': oid, 'total': round(net * 1.2, 2), 'status': 'PENDING'}\n"
    "print(json.dumps(ORDERS[oid]))",
    "# GET /orders/:id\nreq = json.loads(REQUEST)\n"
    "print(json.dumps(ORDERS.get(req['path']['id'])))",
    "# GET /orders\nprint(json.dumps(list(ORDERS.values())))",
]


def kernel_gateway_python() -> Path:
    """The side virtualenv's python, with jupyter_kernel_gateway (installed once)."""
    python = KG_VENV / "bin" / "python"
    if not (KG_VENV / "bin" / "jupyter-kernelgateway").exists():
        print("installing jupyter_kernel_gateway into bench/out/kg-venv (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(KG_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "jupyter_kernel_gateway",
                "ipykernel",
            ],
            check=True,
        )
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        path = folder / var.lower()
        path.mkdir(exist_ok=True)
        env[var] = str(path)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def kg_notebook(path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(c) for c in KG_CELLS])
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    nbformat.write(nb, str(path))


def wait_200(url: str, timeout: float = 120) -> float:
    """Poll ``url`` until it answers 200; returns the time it did (perf_counter)."""
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=2) as c:
        while time.perf_counter() < deadline:
            try:
                if c.get(url).status_code == 200:
                    return time.perf_counter()
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"{url} never answered 200")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def start_microlib(folder: Path, port: int) -> subprocess.Popen[bytes]:
    shutil.copy(ORDERS_NB, folder / "orders_service.ipynb")
    return subprocess.Popen(
        [sys.executable, "-m", "microlib_kernel.cli", "serve", "orders_service.ipynb",
         "--port", str(port), "--no-progress", "--drain", "0"],
        cwd=folder, env=isolated_env(folder), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_kg(folder: Path, port: int, python: Path) -> subprocess.Popen[bytes]:
    kg_notebook(folder / "kg.ipynb")
    return subprocess.Popen(
        [str(python), "-m", "kernel_gateway", "--KernelGatewayApp.api=kernel_gateway.notebook_http",
         "--KernelGatewayApp.seed_uri=kg.ipynb", f"--KernelGatewayApp.port={port}",
         "--KernelGatewayApp.ip=127.0.0.1"],
        cwd=folder, env=isolated_env(folder), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def get_by_id_rate(url: str, seconds: float, folder: Path, concurrency: int = 32) -> float:
    """GET requests/s at ``concurrency`` with the HTTP bench's load generator (wrk when
    installed: httpx's own pool would be the bottleneck, not the servers)."""
    from http_bench import load

    client = "wrk" if shutil.which("wrk") else "python"
    return float(load(client, url, "GET", concurrency, seconds, folder)["rate"])


def run(quick: bool = False) -> list[Result]:
    python = kernel_gateway_python()
    repeat = 1 if quick else 5
    seconds = 2.0 if quick else 4.0
    ml_starts, kg_starts = [], []
    ml_rate = kg_rate = 0.0
    order = {"customer_id": "c1", "items": [{"price": 3.5, "qty": 2}]}
    for i in range(repeat):
        for side in ("microlib", "kg") if i % 2 == 0 else ("kg", "microlib"):
            with tempfile.TemporaryDirectory(prefix=f"bench-{side}-") as tmp:
                port = free_port()
                begin = time.perf_counter()
                if side == "microlib":
                    proc = start_microlib(Path(tmp), port)
                    base = f"http://127.0.0.1:{port}/microlib/api/models/orders"
                else:
                    proc = start_kg(Path(tmp), port, python)
                    base = f"http://127.0.0.1:{port}/orders"
                try:
                    ready = wait_200(base)
                    (ml_starts if side == "microlib" else kg_starts).append(ready - begin)
                    if i >= repeat - 2:  # throughput in the last two rounds
                        created = httpx.post(base, json=order, timeout=10).json()
                        rate = get_by_id_rate(f"{base}/{created['id']}", seconds, Path(tmp))
                        if side == "microlib":
                            ml_rate = rate
                        else:
                            kg_rate = rate
                finally:
                    stop(proc)
    ml, kg = statistics.median(ml_starts), statistics.median(kg_starts)
    generator = "wrk" if shutil.which("wrk") else "asyncio client"
    return [
        Result(
            scenario="Cold start to first 200: microlib serve of the example notebook",
            metric="seconds", value=ml, unit="s",
            baseline="Jupyter Kernel Gateway notebook-http, equivalent notebook",
            baseline_value=kg, target="≤ 0.7× its time", target_ratio=0.7,
            higher_is_better=False, spread=(min(ml_starts), max(ml_starts)),
            baseline_spread=(min(kg_starts), max(kg_starts)), command=COMMAND,
            notes=f"{repeat} fresh processes each, alternating",
        ),
        Result(
            scenario="HTTP GET by id, c=32: microlib serve",
            metric="requests/s", value=ml_rate, unit="req/s",
            baseline="Jupyter Kernel Gateway notebook-http", baseline_value=kg_rate,
            target="≥ 50×", target_ratio=50, command=COMMAND,
            notes=f"{seconds:g} s of load, 32 connections ({generator})",
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
