"""``Order.list()`` of 100,000 instances into models, against DuckDB's own fetch.

Three readings of the same 100,000 rows of one DuckDB file, in one run:

* *hot*: the host that created them lists them (its cache holds every instance);
* *cold*: a new host on the same file lists them (every row is validated);
* the baseline: plain DuckDB, ``SELECT *`` and ``fetchall()`` into dicts (no model).

``python bench/list_load.py [--quick] [--one-array]``. The target is absolute (≤ 0.5 s):
the results carry it as their baseline, beside the ratio to DuckDB's fetch.
``--one-array`` makes the new host read its list as one ``string_agg`` array, as it
did before lists were read in Arrow batches (the README's A/B).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result
from create_throughput import make_order, rows

from microlib_kernel import Host

COMMAND = "python bench/list_load.py"
TARGET_S = 0.5


def _list_seconds(host: Host, order: type, repeat: int) -> list[float]:
    async def one() -> float:
        start = time.perf_counter()
        got = await order.list()
        elapsed = time.perf_counter() - start
        assert len(got) == expected, len(got)
        return elapsed

    expected = host.sql("SELECT count(*) FROM orders").rows[0][0]
    out = []
    for _ in range(repeat):
        out.append(asyncio.run(one()))
        gc.collect()
    return out


def _duckdb_seconds(path: Path, repeat: int) -> list[float]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    out = []
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            cur = con.execute("SELECT * FROM orders")
            names = [d[0] for d in cur.description]
            dicts = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            out.append(time.perf_counter() - start)
            del dicts
            gc.collect()
    finally:
        con.close()
    return out


def run(quick: bool = False, one_array: bool = False) -> list[Result]:
    if one_array:
        from microlib_kernel.store.duckdb import DuckDBStore

        DuckDBStore.json_batches = lambda self, *args: None  # type: ignore[method-assign]
    n, repeat = (20_000, 2) if quick else (100_000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "list.duckdb"
        host = Host(f"duckdb:///{path}")
        order = make_order()
        host.publish(order)

        async def load() -> None:
            data = rows(n)
            for i in range(0, n, 10_000):
                await order.create_many(data[i : i + 10_000])

        asyncio.run(load())
        hot = _list_seconds(host, order, repeat)
        host.close()
        host = Host(f"duckdb:///{path}")
        order = make_order()
        host.publish(order)
        host.cache.clear()  # nothing is cached in a new host; make sure of it
        cold = _list_seconds(host, order, repeat)
        host.close()
        raw = _duckdb_seconds(path, repeat)
    base = statistics.median(raw)
    out = []
    for label, times in (("cache holds them", hot), ("new host, nothing cached", cold)):
        value = statistics.median(times)
        out.append(
            Result(
                scenario=f"Python API: list() of {n:,} instances ({label})",
                metric="seconds",
                value=value,
                unit="s",
                baseline=f"the target ({TARGET_S} s); DuckDB fetchall() into dicts took "
                f"{base:.2f} s ({value / base:.1f}x)",
                baseline_value=TARGET_S,
                target=f"≤ {TARGET_S} s",
                target_ratio=1.0,
                higher_is_better=False,
                spread=(min(times), max(times)),
                command=COMMAND,
                details={"duckdb_fetch_s": base, "ratio_to_duckdb_fetch": value / base},
            )
        )
    return out


if __name__ == "__main__":
    print(
        json.dumps(
            [r.to_json() for r in run("--quick" in sys.argv, "--one-array" in sys.argv)], indent=2
        )
    )
