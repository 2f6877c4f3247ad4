"""Memory: RSS growth of a host holding N cached instances vs the same rows as plain dicts.

Each side runs in a fresh subprocess and reports how much its resident set grew.
``python bench/memory_rss.py [--quick]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

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
    import asyncio, gc, sys, tempfile
    sys.path.insert(0, {str(HERE)!r})
    from common import rss_bytes
    from pydantic import Field
    from microlib_kernel import Host, Model
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
    before = rss_bytes()
    async def load():
        for start in range(0, n, 10000):
            await Order.create_many({ROW} for i in range(start, min(n, start + 10000)))
    asyncio.run(load())
    gc.collect()
    assert len(host.cache) >= n, len(host.cache)
    print(rss_bytes() - before)
    host.close()
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


def _grow(code: str, n: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", code, str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return int(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Result]:
    n = 20_000 if quick else 100_000
    host = _grow(HOST_SIDE, n)
    plain = _grow(DICT_SIDE, n)
    return [
        Result(
            scenario=f"Memory: RSS of a host holding {n:,} cached instances",
            metric="RSS growth",
            value=host / 2**20,
            unit="MiB",
            baseline="the same rows as plain Python dicts",
            baseline_value=plain / 2**20,
            target="≤ 1.5×",
            target_ratio=1.5,
            higher_is_better=False,
            command=COMMAND,
        )
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
