"""Memory: RSS growth of a host holding N cached instances vs the same rows as plain dicts.

Each side runs in a fresh subprocess and reports how much its resident set grew. The
host side also reports what of its growth is not the instances, which the dict side
does not pay: importing pyarrow (the bulk insert path's optional library, a fixed
~40 MiB, imported before the first reading so it is measured apart) and DuckDB's own
memory (its copy of the table and the id index, as ``duckdb_memory()`` counts it).
The target compares the instances: the growth less DuckDB's memory. The whole
growth, both fixed costs included, is reported beside it.
``python bench/memory_rss.py [--quick]``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result

COMMAND = "python bench/memory_rss.py"
HERE = Path(__file__).resolve().parent

ROW = (
    '{"customer": f"c{i % 1000}", "items": [{"sku": "a", "qty": i % 5}], '
    '"total": float(i), "status": "PENDING"}'
)

HOST_SIDE = textwrap.dedent(
    f"""
    import asyncio, gc, json, sys, tempfile
    sys.path.insert(0, {str(HERE)!r})
    from common import rss_bytes
    from pydantic import Field
    from microlib_kernel import Host, Model
    from microlib_kernel.store.duckdb_bulk import arrow
    n = int(sys.argv[1])
    tmp = tempfile.mkdtemp()
    host = Host(f"duckdb:///{{tmp}}/m.duckdb")
    class Order(Model, endpoint="orders"):
        customer: str
        items: list[dict] = Field(default_factory=list)
        total: float = 0.0
        status: str = "PENDING"
    host.publish(Order)
    gc.collect()
    start = rss_bytes()
    arrow()  # what the first bulk insert imports (if installed): a fixed cost
    gc.collect()
    before = rss_bytes()
    duckdb_before = host.datasource.memory_bytes()
    async def load():
        for start in range(0, n, 10000):
            await Order.create_many({ROW} for i in range(start, min(n, start + 10000)))
    asyncio.run(load())
    gc.collect()
    assert len(host.cache) >= n, len(host.cache)
    print(json.dumps({{"growth": rss_bytes() - before, "arrow": before - start,
                      "duckdb": host.datasource.memory_bytes() - duckdb_before}}))
    host.close()
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)  # the database file: nothing to keep
    """
)

DICT_SIDE = textwrap.dedent(
    f"""
    import gc, sys, uuid, datetime as dt
    sys.path.insert(0, {str(HERE)!r})
    from common import rss_bytes
    n = int(sys.argv[1])
    gc.collect()
    before = rss_bytes()
    now = dt.datetime.now(dt.UTC)
    rows = {{}}
    for i in range(n):
        row = {ROW}
        row.update(id=uuid.uuid4().hex, created_at=now, updated_at=now, version="1.0.0",
                   revision=1, port_flow=[], compensation=None)
        rows[row["id"]] = row
    gc.collect()
    print(rss_bytes() - before)
    """
)


def _grow(code: str, n: int) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", code, str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Result]:
    n, repeat = (20_000, 1) if quick else (100_000, 3)
    hosts = [_grow(HOST_SIDE, n) for _ in range(repeat)]
    plains = [_grow(DICT_SIDE, n) / 2**20 for _ in range(repeat)]
    plain = statistics.median(plains)
    mib = {k: [h[k] / 2**20 for h in hosts] for k in ("growth", "arrow", "duckdb")}
    instances = [g - d for g, d in zip(mib["growth"], mib["duckdb"], strict=True)]
    whole = [g + a for g, a in zip(mib["growth"], mib["arrow"], strict=True)]
    details = {k: statistics.median(v) for k, v in mib.items()}
    return [
        Result(
            scenario=f"Memory: RSS of a host holding {n:,} cached instances "
            "(less DuckDB's own memory)",
            metric="RSS growth",
            value=statistics.median(instances),
            unit="MiB",
            baseline="the same rows as plain Python dicts",
            baseline_value=plain,
            target="≤ 1.5×",
            target_ratio=1.5,
            higher_is_better=False,
            spread=(min(instances), max(instances)),
            baseline_spread=(min(plains), max(plains)),
            command=COMMAND,
            details={f"{k}_mib": v for k, v in details.items()},
        ),
        Result(
            scenario=f"Memory: RSS of a host holding {n:,} cached instances "
            "(all of it: DuckDB's memory and the pyarrow import included)",
            metric="RSS growth",
            value=statistics.median(whole),
            unit="MiB",
            baseline="the same rows as plain Python dicts",
            baseline_value=plain,
            higher_is_better=False,
            spread=(min(whole), max(whole)),
            baseline_spread=(min(plains), max(plains)),
            command=COMMAND,
            details={f"{k}_mib": v for k, v in details.items()},
        ),
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
