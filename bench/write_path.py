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

* ``--optimizer``: the host's one-row ``INSERT`` into a DuckDB file, 1,500 in a row, on
  a cursor with DuckDB's optimizer on (the default, as the naive app runs it), with it
  off, and with it off and the statement parsed once (as the host runs a create
  alone), in turn in each round; and, with ``--instructions``, the same three counted
  by callgrind in memory.

* ``--unnest``: the ``INSERT`` of a group commit of 32 creates (one ``unnest`` per
  column) against the same with the columns that hold one value bound once, counted
  by callgrind in memory (optimizer off, statement parsed once, as the host runs it).

Run: ``.venv/bin/python bench/write_path.py [--rounds 12] [--instructions] [--optimizer]
[--unnest]``.
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


def insert_forms(form: str, count: int, path: str = ":memory:") -> float:
    """One statement form, ``count`` times (what callgrind counts); seconds per insert."""
    import duckdb

    columns, sql, params = FORMS[form.removesuffix(PARSED).removesuffix(OPTIMIZER_OFF)]
    con = duckdb.connect(path)
    con.execute(f"CREATE TABLE t ({columns})")
    cur = con.cursor()
    if OPTIMIZER_OFF in form:
        cur.execute("PRAGMA disable_optimizer")
    statement: Any = duckdb.extract_statements(sql)[0] if form.endswith(PARSED) else sql
    start = time.perf_counter()
    for i in range(count):
        cur.execute(statement, [f"{i:032x}", *params])
    elapsed = (time.perf_counter() - start) / count
    cur.close()
    con.close()
    return elapsed


OPTIMIZER_OFF = ", optimizer off"
PARSED = ", parsed once"


def optimizer(rounds: int) -> None:
    """The host's one-row INSERT into a file with the optimizer on, off, and off with the
    statement parsed once, in turn in each round."""
    form = "host, bound as is (now)"
    ways = {"optimizer on": form, "optimizer off": form + OPTIMIZER_OFF,
            "optimizer off, parsed once": form + OPTIMIZER_OFF + PARSED}  # fmt: skip
    times: dict[str, list[float]] = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as folder:
        for n in range(rounds):
            for k, (way, name) in enumerate(ways.items()):
                times[way].append(insert_forms(name, 1500, f"{folder}/{k}-{n}.duckdb") * 1e3)
    on = times["optimizer on"]
    for way, values in times.items():
        ratio = statistics.median([v / o for v, o in zip(values, on, strict=True)])
        print(f"{way:28s} median {statistics.median(values):.3f} ms per insert "
              f"[{min(values):.3f}-{max(values):.3f}], {ratio:.2f}x the first")  # fmt: skip


UNNEST_HEAD = f'INSERT INTO "t" {NAMES9} SELECT unnest($1::VARCHAR[]), '
UNNEST = {
    "32 creates, a list per column": UNNEST_HEAD
    + "CAST(unnest($2::VARCHAR[]) AS TIMESTAMPTZ), CAST(unnest($3::VARCHAR[]) AS TIMESTAMPTZ),"
    " unnest($4::VARCHAR[]), unnest($5::BIGINT[]), CAST(CAST(unnest($6::VARCHAR[]) AS JSON)"
    " AS VARCHAR[]), unnest($7::VARCHAR[]), unnest($8::VARCHAR[]), unnest($9::BIGINT[])",
    "32 creates, shared values bound once": UNNEST_HEAD
    + "CAST(unnest($2::VARCHAR[]) AS TIMESTAMPTZ), CAST(unnest($3::VARCHAR[]) AS TIMESTAMPTZ),"
    " CAST($4 AS VARCHAR), CAST($5 AS BIGINT), CAST(CAST($6 AS JSON) AS VARCHAR[]),"
    " CAST($7 AS VARCHAR), unnest($8::VARCHAR[]), unnest($9::BIGINT[])",
}


def unnest_forms(form: str, count: int) -> None:
    """One group-commit INSERT form, ``count`` times (what callgrind counts)."""
    import duckdb

    con = duckdb.connect(":memory:")
    con.execute(f"CREATE TABLE t ({COLUMNS9})")
    cur = con.cursor()
    cur.execute("PRAGMA disable_optimizer")
    statement = duckdb.extract_statements(UNNEST[form])[0]
    b = 32
    shared = "bound once" in form
    for i in range(count):
        ids = [f"{i:020x}{j:012x}" for j in range(b)]
        framework = (
            ["1.0.0", 1, "[]", None] if shared else [["1.0.0"] * b, [1] * b, ["[]"] * b, [None] * b]
        )
        cur.execute(statement, [ids, [NOW] * b, [NOW] * b, *framework, ["w"] * b, [3] * b])


def instructions(forms: list[str]) -> None:
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed")
    for form in forms:
        counts = []
        # Statements: one row each, or 32 for a group commit's form.
        sizes, rows = ((10, 40), 32) if form in UNNEST else ((100, 400), 1)
        for n in sizes:
            out = subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                 sys.executable, __file__, "--one-form", form, str(n)],
                capture_output=True, text=True, check=True,
            ).stderr  # fmt: skip
            found = re.search(r"Collected : (\d+)", out)
            assert found, out[-500:]
            counts.append(int(found.group(1)))
        per_row = (counts[1] - counts[0]) / ((sizes[1] - sizes[0]) * rows)
        print(f"{form:52s} {per_row / 1e6:.3f} M instructions per row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--creates", type=int, default=400, help="creates per round")
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    parser.add_argument(
        "--optimizer", action="store_true", help="only the INSERT with the optimizer on and off"
    )
    parser.add_argument("--unnest", action="store_true", help="only a group commit's INSERT")
    parser.add_argument("--one-form", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_form:
        form, count = args.one_form[0], int(args.one_form[1])
        unnest_forms(form, count) if form in UNNEST else insert_forms(form, count)
        return
    if args.unnest:
        instructions(list(UNNEST))
        return
    if args.optimizer:
        optimizer(args.rounds)
        if args.instructions:
            form = "host, bound as is (now)"
            instructions([form, form + OPTIMIZER_OFF, form + OPTIMIZER_OFF + PARSED])
        return
    direct_against_writer(args.rounds, args.creates)
    if args.instructions:
        instructions(list(FORMS))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
