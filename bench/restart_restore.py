"""Restart safety: what recording deployments costs, and how long a restore takes.

A host on a DuckDB file keeps its deployment log in a sibling DuckDB file and appends
one record (one autocommitted INSERT) before a deploy, rollback or route change answers.

* **record cost**: ``host.publish(source)`` (a model source, republished) and
  ``host.route(...)``, median of N, with the durable log vs the same host with an
  in-memory log swapped in (baseline, same run, same data file).
* **restore time**: ``Host(...)`` on a data file whose log holds a model with 10 kept
  versions (30 publishes, routes, rollbacks) plus a module and an adapter, vs
  ``Host(...)`` on a data file with an empty log (baseline).

``python bench/restart_restore.py [--quick]``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread

COMMAND = "python bench/restart_restore.py"
SOURCE = """\
from microlib_kernel import Model
from microlib_modules.pricing import RATE

class Order(Model, endpoint="orders"):
    customer: str = "anon"
    total: float = 0.0
    rate: float = RATE
"""


def settings(root: Path, name: str) -> Any:
    from microlib_kernel.config import Settings

    return Settings.load(cwd=root, env={}, datasource=f"duckdb:///{root}/{name}.duckdb")


def timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def record_cost(root: Path, n: int) -> list[Result]:
    from microlib_kernel import Host
    from microlib_kernel.store.deployments import MemoryDeploymentLog

    results = []
    host = Host(settings=settings(root, "cost"))
    try:
        host.publish("RATE = 1.0\n", kind="module", name="pricing")
        host.publish(SOURCE)
        host.publish(SOURCE + "    note: str = ''\n")
        logs = {"durable": host.deployment_log, "memory": MemoryDeploymentLog()}
        phases: dict[str, dict[str, list[float]]] = {
            "publish": {"durable": [], "memory": []},
            "route": {"durable": [], "memory": []},
        }
        # Interleaved (durable, memory, durable, ...) so warm-up and drift hit both alike.
        for i in range(n * 2):
            label = ("durable", "memory")[i % 2]
            host.rollout.journal = logs[label]
            phases["publish"][label] += timed(lambda: host.publish(SOURCE), 1)
            a, b = list(host.registry.get("Order").versions)[-2:]
            for weights in ({a: 50, b: 50}, {a: 90, b: 10}):
                phases["route"][label] += timed(lambda w=weights: host.route("Order", w), 1)
        host.rollout.journal = logs["durable"]
    finally:
        host.close()
    for what, by in phases.items():
        value, spread = median_spread([s * 1000 for s in by["durable"]])
        base, base_spread = median_spread([s * 1000 for s in by["memory"]])
        results.append(
            Result(
                scenario="restart_restore",
                metric=f"host.{what} with the durable deployment log (median)",
                value=value,
                unit="ms",
                baseline=f"host.{what} with an in-memory log, same host and data file",
                baseline_value=base,
                higher_is_better=False,
                spread=spread,
                baseline_spread=base_spread,
                command=COMMAND,
            )
        )
    return results


def restore_time(root: Path, n: int) -> Result:
    from microlib_kernel import Host

    full, empty = settings(root, "full"), settings(root, "empty")
    with Host(settings=full) as host:
        host.publish("RATE = 1.0\n", kind="module", name="pricing")
        host.publish("def note(order):\n    return None\n", kind="adapter", name="audit")
        for i in range(30):
            host.publish(SOURCE + f"    f{i}: int = {i}\n")
            if i % 10 == 9:
                host.rollback("Order")
                latest = host.registry.get("Order").latest().version
                host.route("Order", {latest: 50, host.registry.get("Order").active: 50})
        records = len(host.deployment_log.load())  # type: ignore[union-attr]
    Host(settings=empty).close()

    def open_close(s: Any) -> None:
        Host(settings=s).close()

    restored = timed(lambda: open_close(full), n)
    baseline = timed(lambda: open_close(empty), n)
    value, spread = median_spread([s * 1000 for s in restored])
    base, base_spread = median_spread([s * 1000 for s in baseline])
    return Result(
        scenario="restart_restore",
        metric=f"Host() + close() restoring {records} records (10 kept versions, module, adapter)",
        value=value,
        unit="ms",
        baseline="Host() + close() on a data file with an empty deployment log",
        baseline_value=base,
        higher_is_better=False,
        spread=spread,
        baseline_spread=base_spread,
        command=COMMAND,
    )


def main() -> None:
    quick = "--quick" in sys.argv
    n = 5 if quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = record_cost(root, n)
        results.append(restore_time(root, 3 if quick else 10))
    print(json.dumps([r.to_json() for r in results]))


if __name__ == "__main__":
    main()
