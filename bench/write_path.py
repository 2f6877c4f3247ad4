"""What one create costs on the DuckDB write path (issue 18, POST at c=1).

Two measurements, each side by side with its baseline in the same run:

* ``direct``: ``Repository.create`` one after another on a DuckDB file, the write
  committed on the caller's thread (a write alone, the writer idle) against the same
  creates sent to the writer thread (the direct path switched off), in alternating
  rounds. Reports the median time per create of each, and the median of the rounds'
  differences.
* ``--instructions``: the one-row ``INSERT`` statement forms counted in CPU
  instructions by ``valgrind --tool=callgrind`` (repeatable where wall time is not):
  the host's statement before and after it bound its values with no ``CAST``, and the
  naive baseline's ``INSERT`` into a table of the host's nine columns and of the seven
  it stored before 2026-12-07. Each form runs 100 and 400 inserts into an in-memory
  database; the difference over 300 is the cost per row.

Run: ``.venv/bin/python bench/write_path.py [--rounds 12] [--instructions]``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NOW = "2026-12-07T14:00:00.123456+00:00"
COLUMNS9 = (
    "id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, version VARCHAR, "
    "revision BIGINT, port_flow VARCHAR[], compensation VARCHAR, name VARCHAR, qty BIGINT"
)
COLUMNS7 = (
    "id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, version VARCHAR, "
    "revision BIGINT, name VARCHAR, qty BIGINT"
)
NAMES9 = '("id", "created_at", "updated_at", "version", "revision", "port_flow", "compensation", "name", "qty")'  # noqa: E501
FORMS: dict[str, tuple[str, str, list[Any]]] = {
    "host, with CASTs (before)": (
        COLUMNS9,
        f'INSERT INTO "t" {NAMES9} VALUES ($1, CAST($2 AS TIMESTAMPTZ), CAST($3 AS TIMESTAMPTZ),'
        " $4, $5, CAST(CAST($6 AS JSON) AS VARCHAR[]), $7, $8, $9)",
        [NOW, NOW, "1.0.0", 1, "[]", None, "w", 3],
    ),
    "host, bound as is (now)": (
        COLUMNS9,
        f'INSERT INTO "t" {NAMES9} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
        [NOW, NOW, "1.0.0", 1, [], None, "w", 3],
    ),
    "naive app, nine columns (now)": (
        COLUMNS9,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [NOW, NOW, "1.0.0", 1, [], None, "w", 3],
    ),
    "naive app, seven columns (before)": (
        COLUMNS7,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)",
        [NOW, NOW, "1.0.0", 1, "w", 3],
    ),
}


def direct_against_writer(rounds: int, creates: int) -> None:
    from microlib_kernel import Host, Model
    from microlib_kernel.store.duckdb import DuckDBStore

    class Item(Model, endpoint="items"):
        name: str
        qty: int = 0

    with tempfile.TemporaryDirectory(prefix="write-path-") as folder:
        host = Host(f"duckdb:///{folder}/items.duckdb")
        try:
            host.publish(Item)
            repo = host.repository("items")
            mv = host.registry.get("Item").pick()

            async def run() -> float:
                start = time.perf_counter()
                for _ in range(creates):
                    await repo.create(mv, {"name": "widget", "qty": 3})
                return (time.perf_counter() - start) / creates * 1e3

            direct = DuckDBStore._write_directly
            times: dict[str, list[float]] = {"direct": [], "writer thread": []}
            for _ in range(rounds):
                for way in times:
                    off = way != "direct"
                    DuckDBStore._write_directly = (lambda s, i: False) if off else direct  # type: ignore[method-assign]
                    times[way].append(host.loop.run(run()))
            DuckDBStore._write_directly = direct  # type: ignore[method-assign]
        finally:
            host.close()
    for way, values in times.items():
        print(f"{way:14s} median {statistics.median(values):.3f} ms per create "
              f"[{min(values):.3f}-{max(values):.3f}]")  # fmt: skip
    diffs = [w - d for w, d in zip(times["writer thread"], times["direct"], strict=True)]
    print(f"writer thread - direct, median of the rounds: {statistics.median(diffs):.3f} ms")


def insert_forms(form: str, count: int) -> None:
    """One statement form, ``count`` times (what callgrind counts)."""
    import duckdb

    columns, sql, params = FORMS[form]
    con = duckdb.connect(":memory:")
    con.execute(f"CREATE TABLE t ({columns})")
    for i in range(count):
        con.execute(sql, [f"{i:032x}", *params])


def instructions() -> None:
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed")
    for form in FORMS:
        counts = []
        for n in (100, 400):
            out = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                 sys.executable, __file__, "--one-form", form, str(n)],
                capture_output=True, text=True, check=True,
            ).stderr  # fmt: skip
            found = re.search(r"Collected : (\d+)", out)
            assert found, out[-500:]
            counts.append(int(found.group(1)))
        print(f"{form:36s} {(counts[1] - counts[0]) / 300 / 1e6:.3f} M instructions per row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--creates", type=int, default=400, help="creates per round")
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    parser.add_argument("--one-form", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_form:
        insert_forms(args.one_form[0], int(args.one_form[1]))
        return
    direct_against_writer(args.rounds, args.creates)
    if args.instructions:
        instructions()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
