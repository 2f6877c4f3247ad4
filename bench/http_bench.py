"""HTTP throughput of the host's API against hand-written baselines, in the same run.

Four servers run as subprocesses on 127.0.0.1, port 0 (``bench/http_servers.py``): the
microlib host (DuckDB, group commit), a minimal Starlette + uvicorn app serving the same
routes from a dict (the ceiling), the same app doing one DuckDB INSERT per create, and
one doing one SQLite WAL commit per create. Each is loaded with GET by id, list (20
items) and POST create, at concurrency 1 and 32, by Debian's ``wrk`` when it is
installed (else by a bounded asyncio client written here). The figures that matter are
the ratios; client and servers share the machine's cores.

Rates are the median of ``--rounds`` measurements, the servers taking turns in a rotating
order; ratios are the median of each round's ratio. Other work on the machine makes
single measurements drift, and this keeps the ratios honest.

Run: ``.venv/bin/python bench/http_bench.py [--duration 2] [--rounds 5] [--client wrk|python]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result

HERE = Path(__file__).parent
ROOT = "/microlib/api/models/items"
KINDS = ("microlib", "dict", "duckdb", "sqlite")
BODY = b'{"name": "widget", "qty": 3}'


SCENARIO_OF = {"get": ("GET", "{item}"), "list": ("GET", "?__limit=20"), "post": ("POST", "")}


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[str]
    url: str
    item: str = ""


def start(kind: str, folder: Path) -> Server:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "http_servers.py"), kind, str(folder / kind)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # the server prints its URL first
    if not line.startswith("http://") or time.monotonic() > deadline:
        stop(Server(kind, proc, ""))
        raise SystemExit(f"{kind} server did not start (said {line!r})")
    return Server(kind, proc, line)


def stop(server: Server) -> None:
    """Close its stdin (it exits), then terminate and kill by PID if it lingers."""
    proc = server.proc
    for step in (lambda: proc.stdin and proc.stdin.close(), proc.terminate, proc.kill):
        try:
            step()
            proc.wait(timeout=10)
            break
        except (subprocess.TimeoutExpired, OSError):
            continue
    if proc.stdout:
        proc.stdout.close()


def seed(server: Server, n: int = 100) -> None:
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(n):
            r = client.post(ROOT, json={"name": f"seed{i}", "qty": i})
            r.raise_for_status()
            if not server.item:
                server.item = r.json()["id"]


# -- load generators -------------------------------------------------------------------------


def run_wrk(url: str, method: str, concurrency: int, duration: float, folder: Path) -> dict:
    script = folder / f"{method.lower()}.lua"
    script.write_text(
        f'wrk.method = "{method}"\n'
        + (
            f'wrk.body = \'{BODY.decode()}\'\nwrk.headers["Content-Type"] = "application/json"\n'
            if method == "POST"
            else ""
        )
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rate": rate, "bad": int(bad.group(1)) if bad else 0, "errors": errors is not None}


async def _python_load(url: str, method: str, concurrency: int, duration: float) -> dict:
    """Keep-alive HTTP/1.1 connections, each sending requests back to back."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"{method} {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n"
    request = head.encode() + b"\r\n" + (BODY if method == "POST" else b"")
    done = bad = 0
    stop_at = time.perf_counter() + duration

    async def connection() -> None:
        nonlocal done, bad
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < stop_at:
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                done += 1
                bad += not status_line.split()[1].startswith(b"2")
        finally:
            writer.close()

    begin = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*[connection() for _ in range(concurrency)]), timeout=duration + 30
    )
    return {"rate": done / (time.perf_counter() - begin), "bad": bad, "errors": False}


def load(client: str, url: str, method: str, c: int, duration: float, folder: Path) -> dict:
    if client == "wrk":
        return run_wrk(url, method, c, duration, folder)
    return asyncio.run(_python_load(url, method, c, duration))


# -- the run -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument(
        "--rounds", type=int, default=5, help="measurements per server and scenario (median)"
    )
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--only",
        choices=("get", "list", "post"),
        nargs="+",
        help="measure only these scenarios (all by default)",
    )
    parser.add_argument(
        "--servers", choices=KINDS, nargs="+", help="start only these servers (all by default)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds of 1 s, c=32 only (make bench-quick)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.concurrency = 2, 1.0, [32]
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    scenarios = [("GET by id", "GET", "{item}"), ("list 20", "GET", "?__limit=20")]
    scenarios.append(("POST create", "POST", ""))
    if args.only:
        scenarios = [s for s in scenarios if s[1:] in [SCENARIO_OF[o] for o in args.only]]
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        folder = Path(tmp)
        servers = []
        try:
            for kind in args.servers or KINDS:
                servers.append(start(kind, folder))
                seed(servers[-1])
            say(f"load client: {client}; median of {args.rounds} x {args.duration:g} s")
            for label, method, suffix in scenarios:
                for c in args.concurrency:
                    key = f"{label} c={c}"
                    rounds: dict[str, list[dict]] = {s.kind: [] for s in servers}
                    for r in range(args.rounds):
                        # Rotate the order each round: load from elsewhere on the
                        # machine then drifts over every server alike.
                        for server in servers[r % len(servers) :] + servers[: r % len(servers)]:
                            path = ROOT + ("/" + server.item if suffix == "{item}" else suffix)
                            got = load(client, server.url + path, method, c, args.duration, folder)
                            rounds[server.kind].append(got)
                    results[key] = {kind: median(runs) for kind, runs in rounds.items()}
                    say(row(key, results[key]))
        finally:
            for server in servers:
                stop(server)
    say("\n" + table(results) + "\n\n" + verdict(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    # stdout: the results in bench/run.py's format (the tables above went to stderr)
    print(json.dumps([r.to_json() for r in as_results(results, client, args)], indent=2))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


TARGETS = (  # (scenario, baseline kind, baseline label, target ratio or None)
    ("GET by id c=32", "dict", "the dict app (ceiling)", 0.7),
    ("POST create c=32", "duckdb", "one DuckDB INSERT per create", 4.0),
    ("POST create c=32", "sqlite", "one SQLite WAL commit per create", 1.2),
    ("GET by id c=1", "dict", "the dict app (ceiling)", None),
    ("list 20 c=32", "dict", "the dict app (ceiling)", 0.5),
    ("POST create c=1", "duckdb", "one DuckDB INSERT per create", 1.0),
)


def as_results(results: dict[str, dict[str, dict]], client: str, args: Any) -> list[Result]:
    out = []
    for key, base, label, target in TARGETS:
        if key not in results or not {"microlib", base} <= results[key].keys():
            continue
        mine, theirs = results[key]["microlib"], results[key][base]
        out.append(
            Result(
                scenario=f"HTTP {key}",
                metric="requests per second",
                value=mine["rate"],
                unit="req/s",
                baseline=label,
                baseline_value=theirs["rate"],
                target=f">= {target}x" if target else "",
                target_ratio=target,
                spread=(min(mine["rates"]), max(mine["rates"])),
                baseline_spread=(min(theirs["rates"]), max(theirs["rates"])),
                command="python bench/http_bench.py" + (" --quick" if args.quick else ""),
                notes=f"load by {client}; median of {args.rounds} x {args.duration:g} s, "
                "servers taking turns",
                details={"ratio_of_rounds": round(ratio(results[key], base), 3)},
            )
        )
    return out


def median(runs: list[dict]) -> dict:
    """The run with the median rate (with its counts of bad answers summed over runs)."""
    ordered = sorted(runs, key=lambda r: r["rate"])
    mid = dict(ordered[len(ordered) // 2])
    mid["bad"] = sum(r["bad"] for r in runs)
    mid["rates"] = [round(r["rate"]) for r in runs]  # in round order
    return mid


def row(key: str, figures: dict[str, dict]) -> str:
    cells = ", ".join(f"{k} {v['rate']:,.0f}/s" for k, v in figures.items())
    bad = sum(v["bad"] for v in figures.values())
    return f"{key}: {cells}" + (f" ({bad} non-2xx)" if bad else "")


def ratio(figures: dict[str, dict], base: str) -> float:
    """microlib / base: the median of the ratios of each round (measured minutes apart
    at most, so drift from other work on the machine mostly cancels)."""
    pairs = zip(figures["microlib"]["rates"], figures[base]["rates"], strict=True)
    ratios = sorted(m / b for m, b in pairs if b)
    return ratios[len(ratios) // 2] if ratios else float("nan")


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = [
        "| scenario | microlib | dict app | naive DuckDB | SQLite WAL "
        "| vs dict | vs DuckDB | vs SQLite |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, f in results.items():
        # A server left out (--servers) has an empty cell.
        rates = [f"{f[k]['rate']:,.0f}" if k in f else "" for k in KINDS]
        ratios = [f"{ratio(f, k):.2f}x" if k in f and "microlib" in f else "" for k in KINDS[1:]]
        lines.append(f"| {key} | " + " | ".join(rates) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def verdict(results: dict[str, dict[str, dict]]) -> str:
    out = []
    for key, base, _, target in TARGETS:
        if target is None:
            continue
        if key not in results or not {"microlib", base} <= results[key].keys():
            continue
        got = ratio(results[key], base)
        mark = "met" if got >= target else "MISSED"
        out.append(f"target {key} >= {target}x {base}: {got:.2f}x ({mark})")
    return "\n".join(out)


if __name__ == "__main__":
    main()
