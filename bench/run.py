"""``make bench``: every benchmark with its baseline, one table, written to bench/RESULTS.md.

Each scenario module runs in its own subprocess (a fresh interpreter, bounded by a
timeout) and prints a JSON list of results; this script collects them, prints the
table and writes ``bench/RESULTS.md`` and ``bench/results.json`` with the date, the
machine and the exact commands. A scenario that fails or misses its target is shown
as such, never hidden.

    python bench/run.py            # full run (14–15 minutes on 2 cores)
    python bench/run.py --quick    # quick mode (about 2 minutes)
    python bench/run.py --only sql_groupby
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import Result, machine  # noqa: E402

# (module, timeout seconds full, timeout quick)
SCENARIOS: list[tuple[str, int, int]] = [
    ("create_throughput", 300, 90),
    ("sql_groupby", 300, 60),
    ("memory_rss", 300, 60),
    ("memory_objects", 120, 60),
    ("list_load", 300, 60),
    ("port_call", 300, 90),
    ("secrets_cost", 300, 90),
    ("security_cost", 300, 90),
    ("notebook_latency", 300, 120),
    ("jupyter_proxy", 300, 90),
    ("lambda_cold_start", 600, 300),
    ("publish_latency", 300, 90),
    ("polylith", 900, 300),
    ("kernel_gateway", 600, 240),
    ("http_bench", 900, 240),
    ("restart_restore", 300, 60),
    ("postgres_bench", 400, 90),
    ("cluster_bench", 400, 150),
]


def ensure_wrk() -> None:
    """Install Debian's ``wrk`` (the HTTP load generator) when missing and possible."""
    import os
    import shutil

    if shutil.which("wrk"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("wrk is not installed (no root apt-get here): HTTP load uses the asyncio client",
              flush=True)  # fmt: skip
        return
    print("installing Debian's wrk for the HTTP load: apt-get install -y wrk", flush=True)
    try:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, timeout=300,
                       capture_output=True)  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"could not install wrk ({exc}): HTTP load uses the asyncio client", flush=True)


def run_module(name: str, quick: bool, timeout: int) -> tuple[list[Result], str | None, float]:
    cmd = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if quick else [])
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout} s", time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        return [], "failed: " + " | ".join(tail), elapsed
    try:
        start_json = out.stdout.index("[")
        data = json.loads(out.stdout[start_json:])
    except ValueError:
        return [], "printed no JSON results", elapsed
    results = []
    for item in data:
        item.pop("ratio", None)
        item.pop("met", None)
        for key in ("spread", "baseline_spread"):
            if item.get(key) is not None:
                item[key] = tuple(item[key])
        results.append(Result(**item))
    return results, None, elapsed


def fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def verdict(r: Result) -> str:
    if r.met is None:
        return "reported"
    return "met" if r.met else "**MISSED**"


def table(results: list[Result], failures: dict[str, str]) -> str:
    lines = [
        "| scenario | microlib | baseline (same run) | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        spread = f" ({fmt(r.spread[0])}–{fmt(r.spread[1])})" if r.spread else ""
        bspread = (
            f" ({fmt(r.baseline_spread[0])}–{fmt(r.baseline_spread[1])})"
            if r.baseline_spread
            else ""
        )
        lines.append(
            f"| {r.scenario} | {fmt(r.value)} {r.unit}{spread} | {r.baseline}: "
            f"{fmt(r.baseline_value)} {r.unit}{bspread} | {fmt(r.ratio, 2)}× | {r.target} | "
            f"{verdict(r)} |"
        )
    for name, why in failures.items():
        lines.append(f"| {name} | — | — | — | — | **FAILED**: {why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    ap.add_argument("--only", action="append", help="run only these scenario modules")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args(argv)
    ensure_wrk()
    started = dt.datetime.now(dt.UTC)
    info = machine()
    results: list[Result] = []
    failures: dict[str, str] = {}
    durations: dict[str, float] = {}
    for name, full_timeout, quick_timeout in SCENARIOS:
        if args.only and name not in args.only:
            continue
        print(f"== {name} ...", flush=True)
        got, error, elapsed = run_module(
            name, args.quick, quick_timeout if args.quick else full_timeout
        )
        durations[name] = elapsed
        if error:
            failures[name] = error
            print(f"   FAILED: {error}", flush=True)
        for r in got:
            print(
                f"   {r.scenario}: {fmt(r.value)} {r.unit} vs {fmt(r.baseline_value)} "
                f"({fmt(r.ratio, 2)}×, target {r.target}: {verdict(r)})",
                flush=True,
            )
        results.extend(got)
    body = table(results, failures)
    print("\n" + body)
    mode = "quick" if args.quick else "full"
    flag = " --quick" if args.quick else ""
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    doc = [
        "# Benchmark results",
        "",
        f"Run: {started:%Y-%m-%d %H:%M} UTC, {mode} mode (`python bench/run.py{flag}`, or "
        f"`make bench{'-quick' if args.quick else ''}`), commit {info['commit'] or '?'}.",
        f"Machine: {info['cores']} cores ({info['cpu']}), Python {info['python']}, "
        f"{info['platform']}; load average at start {load}; "
        f"a small write + fsync takes {info['fsync_ms']:.2f} ms (median).",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in info["libraries"].items()) + ".",
        "Load generator and servers share the same machine. Values are medians over repeated "
        "runs (min–max in brackets); ratios compare with a baseline measured in the same run.",
        "",
        body,
        "",
        "Commands (from the project root, with `.venv/bin/python`):",
        "",
        *[f"- `{r.command}`: {r.scenario}" for r in results if r.command],
        "",
        "Durations: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()) + ".",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc), encoding="utf-8")
    (out.parent / "results.json").write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "mode": mode,
                "machine": info,
                "results": [r.to_json() for r in results],
                "failures": failures,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"\nwrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
