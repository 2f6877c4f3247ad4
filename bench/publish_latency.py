"""Hot redeploys: publish-to-serving latency, and failed requests while republishing under load.

A host on a DuckDB file (1,000 stored orders) serves on 127.0.0.1; everything is
measured from this process over loopback HTTP.

* **publish -> first 200**: ``host.publish(source)`` (code streaming: the source is run,
  checked against the stored rows, swapped in) is started, and a client polling
  ``GET /models/orders/{id}`` waits for the first ``200`` whose ``X-Microlib-Version``
  names the new version. Median and p95 over 20 republishes. The same through
  ``POST /deploy``. Baseline, same run: one ``GET`` round trip on the same client.
* **failed requests under load**: an asyncio client keeps 8 requests in flight
  (``POST`` a create, then ``GET`` it) while the model is republished 20 times (every
  fifth republish adds a column, so DDL runs under load too); every answer that is not
  201/200, or any transport error, is a failure. Latency p99 of those requests is
  compared with the same load without republishes.

Targets: 0 failed requests; p50 publish -> first 200 ≤ 50 ms. A missed target prints
``MISSED`` on stderr (and ``bench/run.py`` shows it).

``python bench/publish_latency.py [--quick]``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread

COMMAND = "python bench/publish_latency.py"
SOURCE = """\
from microlib_kernel import Model

class Order(Model, endpoint="orders"):
    customer: str = "anon"
    total: float = 0.0
    status: str = "PENDING"
"""
TARGET_P50_MS = 50.0
CONCURRENCY = 8


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def open_host(root: Path) -> tuple[Any, str, str]:
    from microlib_kernel import Host
    from microlib_kernel.config import Settings

    settings = Settings.load(cwd=root, env={}, datasource=f"duckdb:///{root}/bench.duckdb")
    host = Host(settings=settings)
    host.publish(SOURCE)
    order_cls = host.model("Order")

    async def seed() -> str:
        rows = [{"customer": f"c{i}", "total": float(i)} for i in range(1000)]
        return str((await order_cls.create_many(rows))[0].id)

    first_id = asyncio.run(seed())
    url = host.serve(port=0)
    return host, f"{url}{host.settings.api_root}", first_id


def until_version(client: Any, url: str, version: str, start: float) -> float:
    """Poll ``url`` until a 200 from ``version``; seconds since ``start``."""
    deadline = start + 30
    while time.perf_counter() < deadline:
        r = client.get(url)
        if r.status_code == 200 and r.headers.get("x-microlib-version") == version:
            return time.perf_counter() - start
    raise TimeoutError(f"{version} never served {url}")


def publish_to_served(
    host: Any, api: str, id: str, repeat: int, publish: Callable[[], Any]
) -> tuple[list[float], list[float]]:
    """(publish -> first 200 of the new version, duration of the publish call) per run."""
    import httpx

    latencies, calls = [], []
    url = f"{api}/models/orders/{id}"
    with httpx.Client(timeout=10) as client:
        for _ in range(repeat):
            entry = host.registry.get("Order")
            major, minor, patch = (int(x) for x in entry.latest().version.split("."))
            version = f"{major}.{minor}.{patch + 1}"
            took: list[float] = []

            def run(took: list[float] = took) -> None:
                t = time.perf_counter()
                publish()
                took.append(time.perf_counter() - t)

            worker = threading.Thread(target=run)
            start = time.perf_counter()
            worker.start()
            latencies.append(until_version(client, url, version, start))
            worker.join(30)
            calls.append(took[0])
            time.sleep(0.05)  # let the server go idle between runs
    return latencies, calls


def round_trips(api: str, id: str, n: int) -> list[float]:
    import httpx

    out = []
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            t = time.perf_counter()
            client.get(f"{api}/models/orders/{id}")
            out.append(time.perf_counter() - t)
    return out


class LoadClient:
    """``CONCURRENCY`` asyncio workers (POST then GET) on a loop in their own thread."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> LoadClient:
        self._thread.start()
        return self

    def window(self) -> tuple[int, int]:
        """(requests so far, latencies so far): marks where a phase starts."""
        return self.requests, len(self.latencies)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _main(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=self.api, timeout=10, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, i) for i in range(CONCURRENCY)))

    async def _call(self, client: Any, method: str, path: str, want: int, **kw: Any) -> Any:
        start = time.perf_counter()
        self.requests += 1
        try:
            r = await client.request(method, path, **kw)
        except Exception as exc:  # a transport error is a failed request too
            self.failures.append(f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        self.latencies.append(time.perf_counter() - start)
        if r.status_code != want:
            self.failures.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
            return None
        return r

    async def _worker(self, client: Any, n: int) -> None:
        i = 0
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            i += 1
            r = await self._call(client, "POST", "/models/orders", 201, json={"total": i})
            if r is not None:
                await self._call(client, "GET", f"/models/orders/{r.json()['id']}", 200)


def under_load(host: Any, republishes: int, calm: float) -> dict[str, Any]:
    """Failures and latencies: ``calm`` seconds of load, then load with republishes."""

    load = LoadClient(host.api_url).start()
    time.sleep(0.5)  # warm up connections
    start_req, start_lat = load.window()
    time.sleep(calm)
    mid_req, mid_lat = load.window()
    calm_failures = len(load.failures)
    t0 = time.perf_counter()
    fields = ""
    for i in range(1, republishes + 1):
        if i % 5 == 0:  # every fifth republish adds a column (DDL under load)
            fields += f"    added_{i}: int = {i}\n"
        host.publish(SOURCE + fields)
        time.sleep(0.1)
    span = time.perf_counter() - t0
    end_req, end_lat = load.window()
    load.stop()
    return {
        "failures": load.failures[calm_failures:],
        "calm_failures": calm_failures,
        "requests": end_req - mid_req,
        "calm_requests": mid_req - start_req,
        "latency_p99": p99(load.latencies[mid_lat:end_lat]),
        "latency_max": max(load.latencies[mid_lat:end_lat]),
        "calm_p99": p99(load.latencies[start_lat:mid_lat]),
        "calm_max": max(load.latencies[start_lat:mid_lat]),
        "span": span,
    }


def run(quick: bool = False) -> list[Result]:
    import httpx

    repeat = 5 if quick else 20
    flag = " --quick" if quick else ""
    with tempfile.TemporaryDirectory() as tmp:
        host, api, id = open_host(Path(tmp))
        token = host.deploy_token
        try:
            base = round_trips(api, id, 200)
            py, py_calls = publish_to_served(host, api, id, repeat, lambda: host.publish(SOURCE))

            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=api, headers=headers, timeout=30) as deployer:

                def deploy() -> None:
                    deployer.post("/deploy", json={"source": SOURCE}).raise_for_status()

                http, http_calls = publish_to_served(host, api, id, repeat, deploy)
            load = under_load(host, repeat, calm=1.0 if quick else 3.0)
        finally:
            host.close()

    base_med, base_spread = median_spread([x * 1000 for x in base])
    results = []
    for label, values, calls in (
        ("host.publish(source)", py, py_calls),
        ("POST /deploy", http, http_calls),
    ):
        ms = [x * 1000 for x in values]
        med, spread = median_spread(ms)
        results.append(
            Result(
                scenario=f"publish -> first 200 of the new version ({label})",
                metric="latency p50",
                value=med,
                unit="ms",
                baseline="one GET round trip",
                baseline_value=base_med,
                target=f"p50 ≤ {TARGET_P50_MS:g} ms",
                target_ratio=TARGET_P50_MS / base_med,
                higher_is_better=False,
                spread=spread,
                baseline_spread=base_spread,
                command=COMMAND + flag,
                notes=f"{repeat} republishes; p95 {p95(ms):.1f} ms; the publish call itself "
                f"{statistics.median(calls) * 1000:.1f} ms (median)",
                details={"p95_ms": p95(ms), "all_ms": ms, "call_ms": [c * 1000 for c in calls]},
            )
        )
    failures = len(load["failures"])
    results.append(
        Result(
            scenario=f"failed requests during {repeat} republishes under load (c={CONCURRENCY})",
            metric="failed requests",
            value=float(failures),
            unit="requests",
            baseline="requests sent meanwhile",
            baseline_value=float(load["requests"]),
            target="0 failed",
            target_ratio=0.0,
            higher_is_better=False,
            command=COMMAND + flag,
            notes=f"{load['requests']} requests in {load['span']:.1f} s; "
            f"{load['calm_failures']} failed in the calm phase before",
            details={"failures": load["failures"][:20]},
        )
    )
    results.append(
        Result(
            scenario=f"request latency p99 during {repeat} republishes (c={CONCURRENCY})",
            metric="latency p99",
            value=load["latency_p99"] * 1000,
            unit="ms",
            baseline="same load without republishes",
            baseline_value=load["calm_p99"] * 1000,
            higher_is_better=False,
            command=COMMAND + flag,
            notes=f"max {load['latency_max'] * 1000:.1f} ms vs {load['calm_max'] * 1000:.1f} ms "
            f"without republishes; {load['calm_requests']} calm requests",
        )
    )
    for r in results:
        if r.met is False:
            print(
                f"MISSED: {r.scenario}: {r.value:.1f} {r.unit} (target {r.target})", file=sys.stderr
            )
    return results


if __name__ == "__main__":
    results = run("--quick" in sys.argv)
    print(json.dumps([r.to_json() for r in results], indent=2))
