"""SQL overhead: a GROUP BY over N instances through ``host.sql`` vs raw DuckDB.

Both run the same query on identical tables (the raw table is a copy of the host's,
in its own DuckDB file) in the same run; ratio of median times (lower is better).
``python bench/sql_groupby.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from pydantic import Field

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread, timed

from microlib_kernel import Host, Model

COMMAND = "python bench/sql_groupby.py"
QUERY = (
    "SELECT status, count(*) AS n, sum(total) AS total, avg(total) AS mean "
    "FROM orders GROUP BY status ORDER BY status"
)
STATUSES = ["PENDING", "APPROVED", "SHIPPING", "COMPLETE", "CANCELED"]


def run(quick: bool = False) -> list[Result]:
    import duckdb

    n = 100_000 if quick else 1_000_000
    repeat = 5 if quick else 9
    with tempfile.TemporaryDirectory() as tmp:
        host = Host(f"duckdb:///{tmp}/host.duckdb")

        class Order(Model, endpoint="orders"):
            customer: str
            items: list[dict] = Field(default_factory=list)
            total: float = 0.0
            status: str = "PENDING"

        host.publish(Order)

        async def load() -> None:
            chunk = 50_000
            for start in range(0, n, chunk):
                await Order.create_many(
                    {"customer": f"c{i % 1000}", "total": float(i % 97), "status": STATUSES[i % 5]}
                    for i in range(start, min(n, start + chunk))
                )

        asyncio.run(load())
        host_result = host.sql(QUERY)
        host_times = timed(lambda: host.sql(QUERY), repeat)
        host.close()

        raw = duckdb.connect(f"{tmp}/raw.duckdb")
        raw.execute(f"ATTACH '{tmp}/host.duckdb' AS src (READ_ONLY)")
        raw.execute("CREATE TABLE orders AS SELECT * FROM src.orders")
        raw.execute("DETACH src")
        raw_result = raw.execute(QUERY).fetchall()
        raw_times = timed(lambda: raw.execute(QUERY).fetchall(), repeat)
        raw.close()
    assert [tuple(r) for r in raw_result] == host_result.rows, "the two queries disagree"
    value, spread = median_spread(host_times)
    base, base_spread = median_spread(raw_times)
    return [
        Result(
            scenario=f"SQL: GROUP BY over {n:,} instances",
            metric="query time",
            value=value * 1000,
            unit="ms",
            baseline="raw DuckDB on an identical table",
            baseline_value=base * 1000,
            target="≤ 1.2× its time",
            target_ratio=1.2,
            higher_is_better=False,
            spread=(spread[0] * 1000, spread[1] * 1000),
            baseline_spread=(base_spread[0] * 1000, base_spread[1] * 1000),
            command=COMMAND,
        )
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
