"""Create throughput: a Host writing to DuckDB vs a loop of single-row DuckDB INSERTs.

Both write the same rows to fresh DuckDB files in the same run; the figure that
matters is the ratio. ``python bench/create_throughput.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pydantic import Field

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread

from microlib_kernel import Host, Model
from microlib_kernel.config import Settings

COMMAND = "python bench/create_throughput.py"
#: The host's table for ``make_order``, for the hand-written baselines.
TABLE = (
    "CREATE TABLE orders (id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ,"
    " updated_at TIMESTAMPTZ, version VARCHAR, revision BIGINT, port_flow VARCHAR[],"
    " compensation VARCHAR, customer VARCHAR, items JSON[], total DOUBLE, status VARCHAR)"
)


def make_order() -> type[Model]:
    class Order(Model, endpoint="orders"):
        customer: str
        items: list[dict] = Field(min_length=1)
        total: float = 0.0
        status: str = "PENDING"

    return Order


def rows(n: int) -> list[dict]:
    return [
        {"customer": f"c{i % 100}", "items": [{"sku": "a", "qty": i % 5}], "total": float(i)}
        for i in range(n)
    ]


def host_creates(folder: Path, data: list[dict], batch: int, tune_gc: bool = False) -> float:
    """Seconds for ``Model.create`` of every row, gathered ``batch`` at a time."""
    import gc

    thresholds = gc.get_threshold()
    name = "tuned" if tune_gc else "host"
    host = Host(settings=Settings.load(datasource=f"duckdb:///{folder}/{name}.duckdb",
                                       tune_gc=tune_gc))  # fmt: skip
    Order = make_order()
    host.publish(Order)

    async def run() -> float:
        start = time.perf_counter()
        for i in range(0, len(data), batch):
            await asyncio.gather(*[Order.create(**row) for row in data[i : i + batch]])
        return time.perf_counter() - start

    try:
        return asyncio.run(run())
    finally:
        host.close()
        gc.set_threshold(*thresholds)  # tune_gc is process-wide: undo it for what follows


def host_create_many(folder: Path, data: list[dict], batch: int) -> float:
    """Seconds for ``Model.create_many`` of every row, ``batch`` rows per call."""
    host = Host(f"duckdb:///{folder}/many.duckdb")
    Order = make_order()
    host.publish(Order)

    async def run() -> float:
        start = time.perf_counter()
        for i in range(0, len(data), batch):
            await Order.create_many(data[i : i + batch])
        return time.perf_counter() - start

    try:
        return asyncio.run(run())
    finally:
        host.close()


def naive_inserts(folder: Path, data: list[dict]) -> float:
    """Seconds for one single-row INSERT per row (autocommit), same table shape."""
    import duckdb

    con = duckdb.connect(str(folder / "naive.duckdb"))
    con.execute(TABLE)
    start = time.perf_counter()
    for row in data:
        now = dt.datetime.now(dt.UTC)
        con.execute(
            "INSERT INTO orders VALUES (?, ?, ?, '1.0.0', 1, [], NULL, ?, ?::JSON[], ?, 'PENDING')",
            [
                uuid.uuid4().hex,
                now,
                now,
                row["customer"],
                [json.dumps(i) for i in row["items"]],
                row["total"],
            ],
        )
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def duckdb_arrow_inserts(folder: Path, data: list[dict], batch: int) -> float:
    """Seconds for DuckDB's own bulk path: the same rows, ``batch`` per commit, each batch
    built as an Arrow table from the Python rows and inserted with one statement into
    the same table (primary key included). The ceiling ``create_many`` works under."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(folder / "arrow.duckdb"))
    con.execute(TABLE)
    start = time.perf_counter()
    for i in range(0, len(data), batch):
        chunk = data[i : i + batch]
        rows = pa.table(
            {
                "id": [uuid.uuid4().hex for _ in chunk],
                "customer": [r["customer"] for r in chunk],
                "items": [json.dumps(r["items"]) for r in chunk],
                "total": [r["total"] for r in chunk],
            }
        )
        con.register("batch_rows", rows)
        con.execute(
            "INSERT INTO orders SELECT id, $1, $1, '1.0.0', 1, [], NULL, customer,"
            " CAST(CAST(items AS JSON) AS JSON[]), total, 'PENDING' FROM batch_rows",
            [dt.datetime.now(dt.UTC)],
        )
        con.unregister("batch_rows")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def run(quick: bool = False) -> list[Result]:
    from microlib_kernel.store.duckdb_bulk import arrow

    # pyarrow's import (~0.3 s, once per process, paid by the first bulk write) is made
    # before any timing, as every repeat after the first would find it done.
    arrow()
    n, naive_n, repeat = (10_000, 500, 2) if quick else (100_000, 3_000, 3)
    host_rates, naive_rates, many_rates, tuned_rates = [], [], [], []
    arrow_rates: list[float] = []
    one_call_rates: list[float] = []
    arrow_one_rates: list[float] = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            host_rates.append(n / host_creates(folder, rows(n), 1000))
            naive_rates.append(naive_n / naive_inserts(folder, rows(naive_n)))
            many_rates.append(n / host_create_many(folder, rows(n), 1000))
            arrow_rates.append(n / duckdb_arrow_inserts(folder, rows(n), 1000))
            tuned_rates.append(n / host_creates(folder, rows(n), 1000, tune_gc=True))
        with tempfile.TemporaryDirectory() as tmp:  # fresh files: the same empty table
            folder = Path(tmp)
            one_call_rates.append(n / host_create_many(folder, rows(n), n))
            arrow_one_rates.append(n / duckdb_arrow_inserts(folder, rows(n), n))
    value, spread = median_spread(host_rates)
    base, base_spread = median_spread(naive_rates)
    many, many_spread = median_spread(many_rates)
    tuned, tuned_spread = median_spread(tuned_rates)
    arrow_base, arrow_spread = median_spread(arrow_rates)
    one_call, one_call_spread = median_spread(one_call_rates)
    arrow_one, arrow_one_spread = median_spread(arrow_one_rates)
    return [
        Result(
            scenario=f"Python API: {n:,} creates (gathered 1,000 at a time)",
            metric="creates/s",
            value=value,
            unit="creates/s",
            baseline="loop of single-row DuckDB INSERTs",
            baseline_value=base,
            target="≥ 20×",
            target_ratio=20,
            spread=spread,
            baseline_spread=base_spread,
            command=COMMAND,
            notes="asyncio.gather of Model.create from the caller's loop; default GC settings",
        ),
        Result(
            scenario=f"Python API: {n:,} creates, gathered, with tune_gc (as microlib serve)",
            metric="creates/s",
            value=tuned,
            unit="creates/s",
            baseline="loop of single-row DuckDB INSERTs",
            baseline_value=base,
            target="≥ 20×",
            target_ratio=20,
            spread=tuned_spread,
            baseline_spread=base_spread,
            command=COMMAND,
            notes="MICROLIB_TUNE_GC=1: CPython's full collections no longer walk the cache",
        ),
        Result(
            scenario=f"Python API: {n:,} rows with Model.create_many (1,000 per call)",
            metric="creates/s",
            value=many,
            unit="creates/s",
            baseline="loop of single-row DuckDB INSERTs",
            baseline_value=base,
            target="report",
            spread=many_spread,
            baseline_spread=base_spread,
            command=COMMAND,
            notes="the bulk path (all rows of a call validate, then one bulk write)",
        ),
        Result(
            scenario=f"Python API: Model.create_many ({n:,} rows, 1,000 per call) vs DuckDB's "
            "own Arrow insert of the same batches",
            metric="rows/s",
            value=many,
            unit="rows/s",
            baseline="DuckDB Arrow insert, 1,000 rows per commit, same table",
            baseline_value=arrow_base,
            target="report",
            spread=many_spread,
            baseline_spread=arrow_spread,
            command=COMMAND,
            notes="the ceiling: what DuckDB alone commits at this batch size, rows built as "
            "Arrow tables by hand, with no validation, instances, cache or events",
        ),
        Result(
            scenario=f"Python API: Model.create_many rate ({n:,} rows in one call)",
            metric="rows/s",
            value=one_call,
            unit="rows/s",
            baseline="the target rate (100,000 rows/s)",
            baseline_value=100_000,
            target="≥ 100,000 rows/s",
            target_ratio=1.0,
            spread=one_call_spread,
            command=COMMAND,
            notes="the issue's case: one call, one pydantic-core validation, one Arrow "
            "insert, one commit",
        ),
        Result(
            scenario=f"Python API: Model.create_many ({n:,} rows in one call) vs DuckDB's "
            "own Arrow insert of them in one commit",
            metric="rows/s",
            value=one_call,
            unit="rows/s",
            baseline="DuckDB Arrow insert, all rows in one commit, same table",
            baseline_value=arrow_one,
            target="report",
            spread=one_call_spread,
            baseline_spread=arrow_one_spread,
            command=COMMAND,
            notes="the ceiling at this batch size (see the 1,000-per-call row)",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
