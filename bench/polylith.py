"""The polylith promise, measured: what running models together saves, and that deploys stay
independent. Four scenarios, each side by side with its distributed counterpart in the
same run (DESIGN §1, issue 12):

1. **Call cost**: model A reaches model B inside one host (a relation, and the Python API
   call a port's adapter makes), against the same call over loopback HTTP to a
   ``microlib serve`` process hosting B (httpx, keep-alive): latency p50/p99 and
   throughput. Also reported: a whole port call (adapter + the durable write of
   ``port_flow``) with the adapter calling B in process vs over HTTP.
2. **Footprint**: RSS of one host serving N models against the sum of N hosts (``microlib
   serve`` processes) serving one model each, same data.
3. **Independent deploys under load**: two teams' notebooks in one host; while the orders
   model serves a steady load, the customers notebook is redeployed K times (once with a
   failing check cell, rolled back): failed requests on orders, and whether its version
   history was touched.
4. **Interleaved redeploys**: both notebooks redeployed alternately K times each under
   load on both models: failed requests, and whether each history is its own.

Writes ``bench/polylith.svg`` (a chart of scenarios 1 and 2) next to the results.
``python bench/polylith.py [--quick]``
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import Result  # noqa: E402
from procs import Serve, deploy, serve  # noqa: E402
from svgchart import bars, stack  # noqa: E402

COMMAND = "python bench/polylith.py"
CHART = HERE / "polylith.svg"
ORDERS_NB = ROOT / "notebooks" / "orders_service.ipynb"
CUSTOMERS_NB = ROOT / "notebooks" / "customers_service.ipynb"

IN_HOST_SOURCE = """
from microlib_kernel import Model, port, relation

class Customer(Model, endpoint="customers"):
    name: str
    tier: str = "standard"

class Order(Model, endpoint="orders"):
    customer_id: str
    total: float = 0.0
    customer = relation("Customer", "many_to_one", foreign_key="customer_id")
    lookup = port("crm.lookup")
    lookup_http = port("crm.lookup_http")
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- 1. call cost ------------------------------------------------------------------------------


def call_cost(tmp: Path, quick: bool) -> tuple[list[Result], dict[str, Any]]:
    from microlib_kernel import Host

    n = 500 if quick else 3000
    span = 1.5 if quick else 3.0
    bdir = tmp / "b"
    bdir.mkdir()
    shutil.copy(CUSTOMERS_NB, bdir / "customers_service.ipynb")
    b = serve(bdir, "customers_service.ipynb")
    host = Host(f"duckdb:///{tmp}/a.duckdb")
    try:
        remote = httpx.post(f"{b.api}/models/customers", json={"name": "ada"}, timeout=10).json()
        host.publish(IN_HOST_SOURCE)
        Customer, Order = host.model("Customer"), host.model("Order")
        client: dict[str, httpx.AsyncClient] = {}

        async def lookup(order: Any) -> None:
            await Customer.find(order.customer_id)

        async def lookup_http(order: Any) -> None:
            r = await client["c"].get(f"{b.api}/models/customers/{remote['id']}")
            r.raise_for_status()

        host.adapters.register("crm.lookup", lookup)
        host.adapters.register("crm.lookup_http", lookup_http)

        async def measure() -> dict[str, Any]:
            client["c"] = httpx.AsyncClient(timeout=10)
            try:
                local = await Customer.create(name="ada")
                order = await Order.create(customer_id=local.id)
                out: dict[str, Any] = {}
                out["relation"] = await _latencies(n, lambda: order.customer())
                out["api"] = await _latencies(n, lambda: Customer.find(local.id))
                url = f"{b.api}/models/customers/{remote['id']}"
                out["http"] = await _latencies(n, lambda: _get(client["c"], url))
                out["relation_tput"] = await _throughput(span, lambda: order.customer())
                out["http_tput"] = await _throughput(span, lambda: _get(client["c"], url))
                ports = max(50, n // 10)
                fresh = [await Order.create(customer_id=local.id) for _ in range(ports)]
                out["port"] = await _each(fresh, lambda o: o.lookup())
                fresh = [await Order.create(customer_id=local.id) for _ in range(ports)]
                out["port_http"] = await _each(fresh, lambda o: o.lookup_http())
                return out
            finally:
                await client["c"].aclose()

        got = host.loop.run(measure(), timeout=600)
    finally:
        host.close()
        b.stop()
    us = {k: [x * 1e6 for x in v] for k, v in got.items() if isinstance(v, list)}
    http50 = statistics.median(us["http"])
    results = []
    for key, label in (
        ("relation", "relation: await order.customer()"),
        ("api", "adapter's call: await Customer.find(id)"),
    ):
        results.append(Result(
            scenario=f"Call cost: {label}, in one host",
            metric="latency p50", value=statistics.median(us[key]), unit="µs",
            baseline="the same call over loopback HTTP to a microlib serve process",
            baseline_value=http50, target="≤ 1/50 of HTTP", target_ratio=1 / 50,
            higher_is_better=False, command=COMMAND,
            notes=f"p99 {pct(us[key], 0.99):.0f} µs vs {pct(us['http'], 0.99):.0f} µs; "
                  f"{len(us[key])} calls each",
        ))  # fmt: skip
    results.append(Result(
        scenario="Call cost: throughput at 32 concurrent calls (relation vs HTTP)",
        metric="calls/s", value=got["relation_tput"], unit="calls/s",
        baseline="HTTP GET of the related model, 32 in flight",
        baseline_value=got["http_tput"], target="report", command=COMMAND,
    ))  # fmt: skip
    results.append(Result(
        scenario="Call cost: a whole port call (adapter + durable port_flow write)",
        metric="latency p50", value=statistics.median(us["port"]), unit="µs",
        baseline="the same port with its adapter calling B over HTTP",
        baseline_value=statistics.median(us["port_http"]), target="report",
        higher_is_better=False, command=COMMAND,
        notes="both sides include the same durable write of port_flow, which dominates",
    ))  # fmt: skip
    return results, {k: statistics.median(v) for k, v in us.items()}


async def _get(client: httpx.AsyncClient, url: str) -> None:
    r = await client.get(url)
    r.raise_for_status()


async def _latencies(n: int, call: Callable[[], Coroutine[Any, Any, Any]]) -> list[float]:
    for _ in range(min(50, n)):  # warm up caches, connections
        await call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t)
    return out


async def _each(items: list[Any], call: Callable[[Any], Coroutine[Any, Any, Any]]) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        await call(item)
        out.append(time.perf_counter() - t)
    return out


async def _throughput(span: float, call: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    done = 0
    end = time.perf_counter() + span

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(32)])
    return done / (time.perf_counter() - start)


# -- 2. footprint -------------------------------------------------------------------------------


def model_notebook(path: Path, names: list[str]) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell("%load_ext microlib_kernel")]
    for name in names:
        cells.append(new_code_cell(
            "%%microlib model\nfrom microlib_kernel import Model\n\n"
            f"class {name}(Model, endpoint='{name.lower()}s'):\n"
            "    title: str\n    amount: float = 0.0\n    tags: list[str] = []\n"
        ))  # fmt: skip
    nb = new_notebook(cells=cells)
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    nbformat.write(nb, str(path))


def load_rows(api: str, endpoints: list[str], rows: int) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(timeout=30) as c:
            for ep in endpoints:
                for start in range(0, rows, 50):
                    await asyncio.gather(*[
                        c.post(f"{api}/models/{ep}", json={"title": f"t{i}", "amount": i,
                                                           "tags": ["a", "b"]})
                        for i in range(start, min(rows, start + 50))
                    ])  # fmt: skip

    asyncio.run(go())


def footprint(tmp: Path, quick: bool) -> tuple[list[Result], dict[str, Any]]:
    n = 3 if quick else 10
    rows = 50 if quick else 500
    names = [f"Thing{i}" for i in range(n)]
    one_dir = tmp / "one"
    one_dir.mkdir()
    model_notebook(one_dir / "all.ipynb", names)
    single: list[Serve] = []
    one = serve(one_dir, "all.ipynb")
    try:
        load_rows(one.api, [f"{x.lower()}s" for x in names], rows)
        one_rss = one.rss()
        folders = []
        for name in names:
            d = tmp / f"solo-{name}"
            d.mkdir()
            model_notebook(d / "one.ipynb", [name])
            folders.append(d)
        # Started three at a time: each start is mostly waiting on its kernel.
        with ThreadPoolExecutor(max_workers=3) as pool:
            starts = [pool.submit(serve, d, "one.ipynb") for d in folders]
            errors = []
            for start in starts:
                try:
                    single.append(start.result())
                except Exception as exc:  # every started host is stopped below
                    errors.append(exc)
        if errors:
            raise errors[0]
        for name, s in zip(names, single, strict=True):
            load_rows(s.api, [f"{name.lower()}s"], rows)
        many_rss = sum(s.rss() for s in single)
    finally:
        one.stop()
        for s in single:
            s.stop()
    mib = 2**20
    result = Result(
        scenario=f"Footprint: one host serving {n} models",
        metric="RSS", value=one_rss / mib, unit="MiB",
        baseline=f"sum of {n} hosts serving one model each (same data)",
        baseline_value=many_rss / mib,
        # The target is for ten models; three (quick mode) cannot go below about 1/3.
        target="≤ 1/5" if n >= 10 else "≤ 1/5 with 10 models (full run)",
        target_ratio=0.2 if n >= 10 else None,
        higher_is_better=False, command=COMMAND,
        notes=f"{rows} instances per model; each single-model host ≈ {many_rss / n / mib:.0f} MiB",
    )  # fmt: skip
    return [result], {"one": one_rss / mib, "many": many_rss / mib, "n": n}


# -- 3 and 4. deploys under load ----------------------------------------------------------------


class Load:
    """A steady request load (create then read) on some endpoints, counting failures."""

    def __init__(self, api: str, payloads: dict[str, dict[str, Any]], concurrency: int = 4):
        self.api = api
        self.payloads = payloads
        self.concurrency = concurrency
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=30) as c:
            await asyncio.gather(*[self._worker(c, i) for i in range(self.concurrency)])

    async def _worker(self, c: httpx.AsyncClient, i: int) -> None:
        endpoints = list(self.payloads)
        n = i
        while not self._stop.is_set():
            ep = endpoints[n % len(endpoints)]
            n += 1
            try:
                r = await c.post(f"{self.api}/models/{ep}", json=self.payloads[ep])
                if r.status_code != 201:
                    self.failures.append(f"POST {ep} {r.status_code} {r.text[:120]}")
                    continue
                g = await c.get(f"{self.api}/models/{ep}/{r.json()['id']}")
                if g.status_code != 200:
                    self.failures.append(f"GET {ep} {g.status_code} {g.text[:120]}")
                    continue
                self.ok += 2
            except httpx.HTTPError as exc:
                self.failures.append(f"{ep}: {type(exc).__name__}: {exc}")


def history(api: str) -> dict[str, dict[str, Any]]:
    models = httpx.get(f"{api}/config", timeout=10).json()["models"]
    return {m["name"]: {"versions": m["versions"], "active": m["active"]} for m in models}


ORDER = {"customer_id": "c1", "items": [{"price": 1.0, "qty": 2}]}
CUSTOMER = {"name": "ada", "tier": "gold"}


def deploys(tmp: Path, quick: bool) -> tuple[list[Result], dict[str, Any]]:
    k = 2 if quick else 10
    d = tmp / "teams"
    d.mkdir()
    shutil.copy(ORDERS_NB, d / "orders_service.ipynb")
    shutil.copy(CUSTOMERS_NB, d / "customers_service.ipynb")
    host = serve(d, "orders_service.ipynb", "customers_service.ipynb")
    results: list[Result] = []
    info: dict[str, Any] = {}
    try:
        # 3. steady load on orders; customers redeployed k times, one failing.
        before = history(host.api)
        failing_at = k // 2
        outcomes = []
        customer_active_ok = False
        with Load(host.api, {"orders": ORDER}) as load:
            for i in range(k):
                params = {"revision_note": f"v{i + 2}"}
                if i == failing_at:
                    params["fail_check"] = "true"
                serving = history(host.api)["Customer"]["active"]
                out = deploy(d, "customers_service.ipynb", host.url, params=params)
                outcomes.append(out.returncode)
                if i == failing_at:  # rolled back: the version serving before still serves
                    customer_active_ok = history(host.api)["Customer"]["active"] == serving
        after = history(host.api)
        orders_untouched = after["Order"] == before["Order"]
        failed_ok = outcomes[failing_at] != 0 and all(
            c == 0 for j, c in enumerate(outcomes) if j != failing_at
        )
        results.append(Result(
            scenario=f"Independent deploys: customers redeployed {k}× (1 failing), "
            "load on orders",
            metric="failed requests", value=float(len(load.failures)), unit="requests",
            baseline="requests served meanwhile", baseline_value=float(load.ok),
            target="0 failed", target_ratio=0.0, higher_is_better=False, command=COMMAND,
            notes=("orders history untouched" if orders_untouched else "ORDERS HISTORY CHANGED")
            + ("; the failing deploy was rolled back" if failed_ok and customer_active_ok
               else "; THE FAILING DEPLOY WAS NOT ROLLED BACK"),
            details={"failures": load.failures[:10], "outcomes": outcomes,
                     "before": before, "after": after},
        ))  # fmt: skip
        info["independent_ok"] = orders_untouched and failed_ok and customer_active_ok
        # 4. both redeployed alternately k times each, load on both.
        before = history(host.api)
        codes = []
        with Load(host.api, {"orders": ORDER, "customers": CUSTOMER}) as load:
            for i in range(k):
                codes.append(deploy(d, "orders_service.ipynb", host.url).returncode)
                codes.append(
                    deploy(
                        d, "customers_service.ipynb", host.url, params={"revision_note": f"w{i}"}
                    ).returncode
                )
        after = history(host.api)
        # Each model gained exactly its own k versions, and serves the newest.
        own = all(
            newest(after[m]["versions"]) - newest(before[m]["versions"]) == k
            and after[m]["active"] == after[m]["versions"][-1]
            for m in ("Order", "Customer")
        )
        results.append(Result(
            scenario=f"Interleaved redeploys: both notebooks {k}× each under load on both",
            metric="failed requests", value=float(len(load.failures)), unit="requests",
            baseline="requests served meanwhile", baseline_value=float(load.ok),
            target="0 failed", target_ratio=0.0, higher_is_better=False, command=COMMAND,
            notes=("each model's history is its own" if own and all(c == 0 for c in codes)
                   else f"HISTORIES OR DEPLOYS WRONG: codes {codes}"),
            details={"failures": load.failures[:10], "before": before, "after": after},
        ))  # fmt: skip
        info["interleaved_ok"] = own
    finally:
        host.stop()
    return results, info


def newest(versions: list[str]) -> int:
    """The highest patch number among ``1.0.N`` versions."""
    return max(int(v.rsplit(".", 1)[1]) for v in versions)


# -- run -----------------------------------------------------------------------------------------


def chart(calls: dict[str, Any], feet: dict[str, Any]) -> None:
    footprint = bars(
        f"Footprint: {feet['n']} models in one host vs {feet['n']} single-model hosts",
        [("RSS, same data", [feet["one"], feet["many"]])],
        [f"one host, {feet['n']} models", f"{feet['n']} hosts, one model each"],
        unit="MiB",
        notes=[f"ratio {feet['one'] / feet['many']:.2f}× (target ≤ 0.2×)"],
    )
    calls_chart = bars(
        "Polylith: in-process calls and one shared process vs the distributed way",
        [
            ("relation call", [calls["relation"], calls["http"]]),
            ("adapter's API call", [calls["api"], calls["http"]]),
            ("whole port call", [calls["port"], calls["port_http"]]),
        ],
        ["in one host", "over loopback HTTP"],
        unit="µs (p50)",
        log=True,
        notes=["Measured by bench/polylith.py on this machine; see bench/RESULTS.md."],
    )
    CHART.write_text(stack(calls_chart, footprint), encoding="utf-8")


def run(quick: bool = False) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="microlib-polylith-") as tmp_name:
        tmp = Path(tmp_name)
        calls_results, calls = call_cost(tmp, quick)
        feet_results, feet = footprint(tmp, quick)
        deploy_results, _ = deploys(tmp, quick)
    results += calls_results + feet_results + deploy_results
    if not quick:
        chart(calls, feet)
    return results


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
