"""Where one ``create_many`` of 100,000 rows spends its time (issue 18), and two of its
DuckDB choices against what they replaced, in the same run.

* ``phases``: one ``Order.create_many`` of ``--rows`` rows on a new DuckDB file, timed
  by phase (each phase's function wrapped in a timer), ``--rounds`` times.
* ``ids``: DuckDB's primary-key index taking ``--rows`` ids in one Arrow insert: the
  ids of one call as ``new_ids`` makes them now (one after another) against as many
  independent random ids (48 bits of milliseconds, then 80 random bits each, as it
  made them before), alternately.
* ``constants``: the Arrow insert of the benchmark's rows with every column in the
  Arrow table against the columns that hold one value in every row bound once as
  parameters, alternately.

Run: ``.venv/bin/python bench/bulk_path.py [--rows 100000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from create_throughput import TABLE, make_order, rows


def phases(count: int, rounds: int) -> None:
    """``create_many`` by phase: seconds in each wrapped function, per round."""
    from microlib_kernel import Host
    from microlib_kernel.domain import events
    from microlib_kernel.host import records, repository
    from microlib_kernel.store import cache, duckdb, duckdb_bulk

    spent: dict[str, float] = collections.defaultdict(float)

    def timed(owner: Any, name: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        setattr(owner, name, wrapper)

    for owner, name in [
        (repository.Repository, "_values_many"),
        (repository, "validate_fresh"),
        (repository, "dump_columns"),
        (records, "_columnwise"),
        (duckdb, "arrow_insert_columns"),
        (repository, "share_fields_sets"),
        (cache.InstanceCache, "put_many"),
        (events.EventBroker, "publish_each"),
    ]:
        if hasattr(owner, name):
            timed(owner, name)
    duckdb_bulk.arrow()  # pyarrow's import, once per process, before any timing
    data = rows(count)
    with tempfile.TemporaryDirectory() as folder:
        for n in range(rounds):
            host = Host(f"duckdb:///{folder}/many{n}.duckdb")
            Order = make_order()
            host.publish(Order)
            spent.clear()

            async def run(model: Any) -> float:
                start = time.perf_counter()
                await model.create_many(data)
                return time.perf_counter() - start

            try:
                elapsed = asyncio.run(run(Order))
            finally:
                host.close()
            parts = " ".join(f"{k}={v:.3f}" for k, v in spent.items())
            print(f"{count / elapsed:>9,.0f} rows/s  {elapsed:.3f} s  {parts}")


def _alternate(rounds: int, ways: dict[str, Callable[[str], float]]) -> None:
    """Each way once per round, in turn, each into a new DuckDB file; medians."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as folder:
        for n in range(rounds):
            for name, way in ways.items():
                times[name].append(way(f"{folder}/{name.split()[0]}{n}.duckdb"))
    for name, values in times.items():
        print(f"  {name:40s} median {statistics.median(values):.3f} s "
              f"[{min(values):.3f}-{max(values):.3f}]")  # fmt: skip


def _insert(path: str, ddl: str, columns: dict[str, Any], sql: str, params: list[Any]) -> float:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(path)
    con.execute(ddl)
    table = pa.table(columns)
    start = time.perf_counter()
    con.register("rows_in", table)
    con.execute(sql, params)
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def ids(count: int, rounds: int) -> None:
    from microlib_kernel.domain.ids import new_ids

    millis = time.time_ns() // 1_000_000
    independent = [f"{millis << 80 | random.getrandbits(80):032x}" for _ in range(count)]
    ddl, sql = "CREATE TABLE t (id VARCHAR PRIMARY KEY)", "INSERT INTO t SELECT id FROM rows_in"
    print(f"primary-key insert of {count:,} ids:")
    _alternate(rounds, {
        "independent (80 random bits each)":
            lambda p: _insert(p, ddl, {"id": independent}, sql, []),
        "one call's (new_ids, one after another)":
            lambda p: _insert(p, ddl, {"id": new_ids(count)}, sql, []),
    })  # fmt: skip


def constants(count: int, rounds: int) -> None:
    import datetime as dt
    import json

    from microlib_kernel.domain.ids import new_ids

    data = rows(count)
    now = dt.datetime.now(dt.UTC).isoformat()
    varying = {
        "id": new_ids(count),
        "customer": [r["customer"] for r in data],
        "items": [json.dumps(r["items"]) for r in data],
        "total": [r["total"] for r in data],
    }
    every = {**varying, "created_at": [now] * count, "updated_at": [now] * count,
             "version": ["1.0.0"] * count, "revision": [1] * count, "port_flow": ["[]"] * count,
             "compensation": [None] * count, "status": ["PENDING"] * count}  # fmt: skip
    items = "CAST(CAST(items AS JSON) AS JSON[])"
    all_sql = (
        "INSERT INTO orders SELECT id, CAST(created_at AS TIMESTAMPTZ), CAST(updated_at AS"
        " TIMESTAMPTZ), version, revision, CAST(CAST(port_flow AS JSON) AS VARCHAR[]),"
        f" CAST(compensation AS VARCHAR), customer, {items}, total, status FROM rows_in"
    )
    bound_sql = (
        "INSERT INTO orders SELECT id, CAST($1 AS TIMESTAMPTZ), CAST($1 AS TIMESTAMPTZ),"
        " CAST($2 AS VARCHAR), CAST($3 AS BIGINT), CAST(CAST($4 AS JSON) AS VARCHAR[]),"
        f" CAST($5 AS VARCHAR), customer, {items}, total, CAST($6 AS VARCHAR) FROM rows_in"
    )
    params = [now, "1.0.0", 1, "[]", None, "PENDING"]
    print(f"Arrow insert of {count:,} orders (Arrow table made outside the timing):")
    _alternate(rounds, {
        "every column in the Arrow table": lambda p: _insert(p, TABLE, every, all_sql, []),
        "one-value columns bound once": lambda p: _insert(p, TABLE, varying, bound_sql, params),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", default=["phases", "ids", "constants"])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for what in args.what:
        {"phases": phases, "ids": ids, "constants": constants}[what](args.rows, args.rounds)


if __name__ == "__main__":
    main()
