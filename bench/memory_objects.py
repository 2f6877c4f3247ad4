"""Memory, object by object: a cached instance against its plain dict, with ``tracemalloc``.

``memory_rss.py`` measures resident memory, which also holds allocator state (pools
emptied by temporaries, the C heap of other threads). This counts only the Python
objects left alive: the same rows as validated instances held in the host's
:class:`~microlib_kernel.store.cache.InstanceCache` (their fields sets shared, as the
host does), against plain dicts keyed by id. ``python bench/memory_objects.py [--quick]``.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import sys
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result

from microlib_kernel import Model
from microlib_kernel.domain.ids import new_ids
from microlib_kernel.host.bulk import list_adapter, share_fields_sets
from microlib_kernel.store.cache import InstanceCache

COMMAND = "python bench/memory_objects.py"


class Order(Model, endpoint="orders"):
    customer: str
    items: list[dict] = Field(default_factory=list)
    total: float = 0.0
    status: str = "PENDING"


def _rows(n: int) -> list[dict[str, Any]]:
    return [
        {"customer": f"c{i % 1000}", "items": [{"sku": "a", "qty": i % 5}], "total": float(i),
         "status": "PENDING"}
        for i in range(n)
    ]  # fmt: skip


def _bytes_kept(build: Callable[[], Any]) -> int:
    """Bytes of the Python objects ``build`` returns (what is still alive afterwards)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def dicts(n: int) -> dict[str, dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    out = {}
    for row in _rows(n):
        row.update(id=uuid.uuid4().hex, created_at=now, updated_at=now, version="1.0.0",
                   revision=1, port_flow=[], compensation=None)  # fmt: skip
        out[row["id"]] = row
    return out


def cached_instances(n: int) -> InstanceCache:
    now = dt.datetime.now(dt.UTC)
    values = [
        {**row, "id": id, "created_at": now, "updated_at": now, "version": "1.0.0",
         "revision": 1, "port_flow": [], "compensation": None}
        for row, id in zip(_rows(n), new_ids(n), strict=True)
    ]  # fmt: skip
    instances = list_adapter(Order).validate_python(values)
    del values
    share_fields_sets(instances)
    cache = InstanceCache(n)
    cache.put_many("orders", [(i.id, i) for i in instances])
    return cache


def run(quick: bool = False) -> list[Result]:
    n = 20_000 if quick else 100_000
    plain = _bytes_kept(lambda: dicts(n)) / n
    host = _bytes_kept(lambda: cached_instances(n)) / n
    return [
        Result(
            scenario=f"Memory, objects only (tracemalloc): {n:,} cached instances",
            metric="bytes per row",
            value=host,
            unit="B/row",
            baseline="the same rows as plain Python dicts",
            baseline_value=plain,
            target="report",
            higher_is_better=False,
            command=COMMAND,
            notes="instance + cache entry; RSS (memory_rss.py) adds allocator state",
        )
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
