"""HTTP throughput of one host on PostgreSQL, against the same host on DuckDB and a
hand-written Starlette + psycopg app, in the same run.

Three servers run as subprocesses on 127.0.0.1, port 0 (``bench/pg_servers.py``); the
two PostgreSQL ones each get a throwaway database on the machine's server
(``MICROLIB_BENCH_POSTGRES``, default ``postgresql://postgres@127.0.0.1:5432``), dropped
afterwards. Each is loaded with GET by id and POST create, by Debian's ``wrk`` when it
is installed (else the asyncio client of ``http_bench.py``), the servers taking turns
in a rotating order; rates are medians of the rounds, ratios the median of each
round's ratio. Client, servers and PostgreSQL share the machine's cores.

Run: ``.venv/bin/python bench/postgres_bench.py [--quick] [--rounds 5] [--duration 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result
from http_bench import ROOT, Server, load, median, ratio, seed, stop

HERE = Path(__file__).parent
KINDS = ("microlib-pg", "microlib-duckdb", "starlette-pg")
SERVER = os.environ.get("MICROLIB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


def create_database() -> str:
    import psycopg

    name = f"microlib_bench_{secrets.token_hex(6)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(kind: str, folder: Path, url: str) -> Server:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "pg_servers.py"), kind, str(folder / kind), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # the server prints its URL first
    if not line.startswith("http://"):
        stop(Server(kind, proc, ""))
        raise SystemExit(f"{kind} server did not start (said {line!r})")
    return Server(kind, proc, line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per server (median)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s, c=32 only")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.concurrency = 2, 1.0, [32]
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    scenarios = [("GET by id", "GET"), ("POST create", "POST")]
    results: dict[str, dict[str, dict]] = {}
    databases: list[str] = []
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        folder = Path(tmp)
        try:
            for kind in KINDS:
                url = ""
                if kind.endswith("-pg"):
                    databases.append(create_database())
                    url = f"{SERVER}/{databases[-1]}"
                servers.append(start(kind, folder, url))
                seed(servers[-1])
            say(f"load client: {client}; median of {args.rounds} x {args.duration:g} s")
            for label, method in scenarios:
                for c in args.concurrency:
                    key = f"{label} c={c}"
                    rounds: dict[str, list[dict]] = {s.kind: [] for s in servers}
                    for r in range(args.rounds):
                        for server in servers[r % len(servers) :] + servers[: r % len(servers)]:
                            path = ROOT + ("/" + server.item if method == "GET" else "")
                            got = load(client, server.url + path, method, c, args.duration, folder)
                            rounds[server.kind].append(got)
                    results[key] = {kind: median(runs) for kind, runs in rounds.items()}
                    say(row(key, results[key]))
        finally:
            for server in servers:
                stop(server)
            time.sleep(0.2)
            for name in databases:
                drop_database(name)
    say("\n" + table(results))
    print(json.dumps([r.to_json() for r in as_results(results, client, args)], indent=2))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def row(key: str, figures: dict[str, dict]) -> str:
    cells = ", ".join(f"{k} {v['rate']:,.0f}/s" for k, v in figures.items())
    bad = sum(v["bad"] for v in figures.values())
    return f"{key}: {cells}" + (f" ({bad} non-2xx)" if bad else "")


def relative(figures: dict[str, dict], mine: str, base: str) -> float:
    """``mine / base``, as the median of each round's ratio (see ``http_bench.ratio``)."""
    return ratio({"microlib": figures[mine], base: figures[base]}, base)


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| scenario | host on PostgreSQL | host on DuckDB | Starlette + psycopg "
        "| vs DuckDB host | vs Starlette + psycopg |",
        "|---|---|---|---|---|---|",
    ]
    for key, f in results.items():
        rates = " | ".join(f"{f[k]['rate']:,.0f}" for k in KINDS)
        lines.append(
            f"| {key} | {rates} | {relative(f, 'microlib-pg', 'microlib-duckdb'):.2f}x "
            f"| {relative(f, 'microlib-pg', 'starlette-pg'):.2f}x |"
        )
    return "\n".join(lines)


BASELINES = (
    ("starlette-pg", "hand-written Starlette + psycopg"),
    ("microlib-duckdb", "the same host on DuckDB"),
)


def as_results(
    results: dict[str, dict[str, dict]], client: str, args: argparse.Namespace
) -> list[Result]:
    out = []
    for key, figures in results.items():
        mine = figures["microlib-pg"]
        for base, label in BASELINES:
            theirs = figures[base]
            out.append(
                Result(
                    scenario=f"PostgreSQL host: HTTP {key}",
                    metric="requests per second",
                    value=mine["rate"],
                    unit="req/s",
                    baseline=label,
                    baseline_value=theirs["rate"],
                    spread=(min(mine["rates"]), max(mine["rates"])),
                    baseline_spread=(min(theirs["rates"]), max(theirs["rates"])),
                    command="python bench/postgres_bench.py" + (" --quick" if args.quick else ""),
                    notes=f"load by {client}; median of {args.rounds} x {args.duration:g} s, "
                    "servers taking turns; PostgreSQL on the same machine",
                    details={"ratio_of_rounds": round(relative(figures, "microlib-pg", base), 3)},
                )
            )
    return out


if __name__ == "__main__":
    main()
