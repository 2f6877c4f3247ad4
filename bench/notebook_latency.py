"""Notebook latency: from executing a ``%%microlib model`` cell to its endpoint answering 200.

Two scenarios, each in real kernels started with jupyter_client, measured from this
process over loopback HTTP:

* **republish**: a model cell executed again and again (a hot redeploy each time); time
  from sending the cell to the first ``200`` of ``GET /models/orders`` served by the
  new version (``X-Microlib-Version``). Median over 20 republishes.
* **first publish**: a fresh kernel, ``%load_ext microlib_kernel``, then the model cell;
  time from sending that first cell to the first ``200`` (the HTTP server starts on
  the first publish). Median over several fresh kernels.

Baseline, same run, same kernel: sending an empty cell and receiving its reply (the
kernel's own round trip), so the ratio says how much publishing and serving add.

``python bench/notebook_latency.py [--quick]``
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread

COMMAND = "python bench/notebook_latency.py"
MODEL = """%%microlib model
from pydantic import Field
from microlib_kernel import Model

class Order(Model, endpoint="orders"):
    items: list[dict] = Field(min_length=1)
    total: float = 0.0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchKernel:
    """A kernel in its own temp folder, serving on a known port."""

    def __init__(self, root: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.cwd = Path(tempfile.mkdtemp(dir=root))
        self.port = free_port()
        env = {**os.environ, "MICROLIB_SERVE": "1", "MICROLIB_PORT": str(self.port)}
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(self.cwd), env=env)
        self.url = f"http://127.0.0.1:{self.port}/microlib/api/models/orders"

    def send(self, code: str) -> str:
        return str(self.kc.execute(code))

    def reply(self, msg_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.kc.get_shell_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") == msg_id:
                content: dict[str, Any] = msg["content"]
                if content["status"] != "ok":
                    raise RuntimeError(f"cell failed: {content.get('evalue')}")
                return content
        raise TimeoutError("no reply")

    def run(self, code: str) -> None:
        self.reply(self.send(code))

    def round_trip(self) -> float:
        start = time.perf_counter()
        self.run("pass")
        return time.perf_counter() - start

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def until_served(client: Any, url: str, version: str | None, start: float) -> float:
    """Poll ``url`` until it answers 200 (from ``version``); seconds since ``start``."""
    import httpx

    deadline = start + 60
    while time.perf_counter() < deadline:
        try:
            r = client.get(url)
        except httpx.TransportError:
            time.sleep(0.001)
            continue
        if r.status_code == 200 and (
            version is None or r.headers.get("X-Microlib-Version") == version
        ):
            return time.perf_counter() - start
        time.sleep(0.001)
    raise TimeoutError(f"{url} never answered 200")


def republish(root: Path, repeat: int) -> tuple[list[float], list[float]]:
    import httpx

    k = BenchKernel(root)
    try:
        k.run("%load_ext microlib_kernel")
        k.run(MODEL)  # 1.0.0, and the server starts
        times, baseline = [], []
        with httpx.Client(timeout=5) as client:
            for i in range(repeat):
                start = time.perf_counter()
                msg_id = k.send(MODEL)
                times.append(until_served(client, k.url, f"1.0.{i + 1}", start))
                k.reply(msg_id)
                baseline.append(k.round_trip())
        return times, baseline
    finally:
        k.close()


def first_publish(root: Path, kernels: int) -> tuple[list[float], list[float], list[float]]:
    import httpx

    times, baseline, loads = [], [], []
    for _ in range(kernels):
        k = BenchKernel(root)
        try:
            baseline.append(k.round_trip())
            start = time.perf_counter()
            k.run("%load_ext microlib_kernel")
            loads.append(time.perf_counter() - start)
            with httpx.Client(timeout=5) as client:
                start = time.perf_counter()
                msg_id = k.send(MODEL)
                times.append(until_served(client, k.url, "1.0.0", start))
                k.reply(msg_id)
        finally:
            k.close()
    return times, baseline, loads


def run(quick: bool = False) -> list[Result]:
    repeat, kernels = (5, 2) if quick else (20, 5)
    flag = " --quick" if quick else ""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for var in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
            os.environ[var] = str(root / var.lower())  # keep Jupyter state out of $HOME
        re_times, re_base = republish(root, repeat)
        first, first_base, loads = first_publish(root, kernels)
    (re_med, re_spread), (reb_med, reb_spread) = median_spread(re_times), median_spread(re_base)
    (fi_med, fi_spread), (fib_med, fib_spread) = median_spread(first), median_spread(first_base)
    load_med, _ = median_spread(loads)
    return [
        Result(
            scenario="republish model cell -> 200",
            metric="latency",
            value=re_med * 1000,
            unit="ms",
            baseline="empty cell round trip",
            baseline_value=reb_med * 1000,
            higher_is_better=False,
            spread=(re_spread[0] * 1000, re_spread[1] * 1000),
            baseline_spread=(reb_spread[0] * 1000, reb_spread[1] * 1000),
            command=COMMAND + flag,
            notes=f"median of {repeat} republishes, new version's first 200",
        ),
        Result(
            scenario="first model cell after %load_ext -> 200",
            metric="latency",
            value=fi_med * 1000,
            unit="ms",
            baseline="empty cell round trip",
            baseline_value=fib_med * 1000,
            higher_is_better=False,
            spread=(fi_spread[0] * 1000, fi_spread[1] * 1000),
            baseline_spread=(fib_spread[0] * 1000, fib_spread[1] * 1000),
            command=COMMAND + flag,
            notes=f"median of {kernels} fresh kernels; %load_ext took {load_med * 1000:.0f} ms",
            details={"load_ext_ms": [x * 1000 for x in loads]},
        ),
    ]


if __name__ == "__main__":
    results = run("--quick" in sys.argv)
    print(json.dumps([r.to_json() for r in results], indent=2))
