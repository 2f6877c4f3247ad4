"""Create throughput: a Host writing to DuckDB vs a loop of single-row DuckDB INSERTs.

Both write the same rows to a fresh DuckDB file in the same run; the figure that
matters is the ratio. Run: ``.venv/bin/python bench/create_throughput.py [--n 20000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pydantic import Field

from microlib_kernel import Host, Model


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


def host_creates(folder: Path, data: list[dict], batch: int) -> float:
    host = Host(f"duckdb:///{folder}/host.duckdb")
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


def naive_inserts(folder: Path, data: list[dict]) -> float:
    import datetime as dt
    import uuid

    import duckdb

    con = duckdb.connect(str(folder / "naive.duckdb"))
    con.execute(
        "CREATE TABLE orders (id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ,"
        " updated_at TIMESTAMPTZ, version VARCHAR, revision BIGINT, port_flow VARCHAR[],"
        " compensation VARCHAR,"
        " customer VARCHAR, items JSON[], total DOUBLE, status VARCHAR)"
    )
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000, help="creates through the Host")
    ap.add_argument("--naive-n", type=int, default=2_000, help="single-row INSERTs (slow)")
    ap.add_argument("--batch", type=int, default=1000, help="creates gathered at once")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    host_rates, naive_rates = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            host_rates.append(args.n / host_creates(folder, rows(args.n), args.batch))
            naive_rates.append(args.naive_n / naive_inserts(folder, rows(args.naive_n)))
    result = {
        "scenario": "python-api-creates",
        "host_creates_per_s": statistics.median(host_rates),
        "naive_inserts_per_s": statistics.median(naive_rates),
        "ratio": statistics.median(host_rates) / statistics.median(naive_rates),
        "host_min_max": [min(host_rates), max(host_rates)],
        "naive_min_max": [min(naive_rates), max(naive_rates)],
        "n": args.n,
        "batch": args.batch,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
