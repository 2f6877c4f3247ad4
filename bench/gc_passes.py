"""What CPython's cyclic collector costs in the bulk paths, with and without promotion.

Runs ``Order.create_many`` of 100,000 rows (1,000 per call), ``Order.list()`` of them on
a new host, and 100,000 ``Order.create`` gathered 1,000 at a time, counting the
collections of each generation and their time with ``gc.callbacks``. ``--no-promote``
switches off what ``paused_gc`` does when a pause ends (filing the burst's objects with
the old ones), for the A/B in the README:

    python bench/gc_passes.py               # as shipped
    python bench/gc_passes.py --no-promote  # the young collections walk the burst again

Not part of ``make bench``: it explains a figure, it has no baseline of its own.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from create_throughput import host_creates, make_order, rows

from microlib_kernel import Host, gc_pause


class Collections:
    """Collections per generation and their seconds, while installed."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            generation = info["generation"]
            self.count[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._start

    def __enter__(self) -> Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)

    def report(self) -> dict[str, Any]:
        return {
            "collections": self.count,
            "seconds": [round(s, 3) for s in self.seconds],
            "total_s": round(sum(self.seconds), 3),
        }


def main(promote: bool = True, n: int = 100_000) -> dict[str, Any]:
    if not promote:
        gc_pause._promote_survivors = lambda: None  # type: ignore[assignment]
    folder = Path(tempfile.mkdtemp(prefix="gc-passes-"))
    url = f"duckdb:///{folder}/orders.duckdb"
    host = Host(url)
    order = make_order()
    host.publish(order)
    data = rows(n)

    async def create() -> float:
        start = time.perf_counter()
        for i in range(0, n, 1000):
            await order.create_many(data[i : i + 1000])
        return time.perf_counter() - start

    gc.collect()
    with Collections() as during_create:
        create_s = asyncio.run(create())
    host.close()

    host = Host(url)  # a new host: nothing cached, every row validated
    order = make_order()
    host.publish(order)

    async def listing() -> float:
        start = time.perf_counter()
        got = await order.list()
        elapsed = time.perf_counter() - start
        assert len(got) == n
        _ = [object() for _ in range(2000)]  # allocations after it: a deferred collection
        return elapsed

    gc.collect()
    with Collections() as during_list:
        list_s = asyncio.run(listing())
    host.close()
    gc.collect()
    with Collections() as during_gathered:
        gathered_s = host_creates(folder, rows(n), 1000)
    return {
        "promote": promote,
        "create_many": {"rows_per_s": round(n / create_s), **during_create.report()},
        "new_host_list": {"list_s": round(list_s, 3), **during_list.report()},
        "gathered_creates": {
            "creates_per_s": round(n / gathered_s),
            "wall_s": round(gathered_s, 2),
            **during_gathered.report(),
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(promote="--no-promote" not in sys.argv), indent=2))
