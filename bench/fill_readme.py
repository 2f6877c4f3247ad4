"""Copy the figures of the last ``make bench`` run into the README's benchmark tables.

The README's two benchmark tables carry the ratios of the run recorded in
``bench/results.json``. Rather than editing them by hand (and mistyping a figure), this
script rewrites the lines between the ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
markers from the results.  Run: ``.venv/bin/python bench/fill_readme.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def find(results: list[dict[str, Any]], prefix: str, baseline: str | None = None) -> dict[str, Any]:
    """The result whose scenario starts with ``prefix`` (and baseline contains ``baseline``)."""
    for r in results:
        if r["scenario"].startswith(prefix) and (baseline is None or baseline in r["baseline"]):
            return r
    wanted = prefix if baseline is None else f"{prefix} (baseline {baseline})"
    raise SystemExit(f"fill_readme: no result for {wanted!r}; run make bench")


def maybe(results: list[dict[str, Any]], prefix: str, baseline: str | None = None) -> Any:
    """Like :func:`find`, or ``None`` for a scenario the recorded run predates."""
    try:
        return find(results, prefix, baseline)
    except SystemExit:
        return None


NOT_RUN = "not in the recorded run"


def verdict(r: dict[str, Any]) -> str:
    """met / **missed** / reported, as the table shows it."""
    if r.get("met") is True:
        return "met"
    if r.get("met") is False:
        return "**missed**"
    return "reported"


def times(x: float) -> str:
    if x < 10:
        return f"{x:.2f}×"
    return f"{x:.1f}×" if x < 100 else f"{x:.0f}×"


def us(x: float) -> str:
    return f"{x:.1f} µs" if x < 100 else f"{x:,.0f} µs"


def ms(x: float) -> str:
    return f"{x:.1f} ms"


def fraction(r: float) -> str:
    """A ratio below one, as "1/N" (how many times cheaper)."""
    return f"1/{1 / r:,.0f}" if r > 0 else "0"


def benchmark_rows(res: list[dict[str, Any]]) -> dict[str, str]:
    get32 = find(res, "HTTP GET by id c=32")
    postd = find(res, "HTTP POST create c=32", "DuckDB")
    posts = find(res, "HTTP POST create c=32", "SQLite")
    kg = find(res, "HTTP GET by id, c=32: microlib serve")
    create = find(res, "Python API: 100,000 creates (gathered")
    tuned = find(res, "Python API: 100,000 creates, gathered, with tune_gc")
    many = find(res, "Python API: 100,000 rows with Model.create_many")
    sql = find(res, "SQL: GROUP BY")
    pub = find(res, "publish -> first 200 of the new version (host.publish")
    fail = find(res, "failed requests during 20 republishes")
    cold = find(res, "Cold start to first 200")
    rss = find(res, "Memory: RSS")
    rss_all = maybe(res, "Memory: RSS of a host holding 100,000 cached instances (all of it")
    lst = find(res, "HTTP list 20 c=32")
    post1 = find(res, "HTTP POST create c=1")
    rate = maybe(res, "Python API: Model.create_many rate")
    ceiling = maybe(res, "Python API: Model.create_many (100,000 rows, 1,000 per call)")
    ceiling1 = maybe(res, "Python API: Model.create_many (100,000 rows in one call)")
    objects = maybe(res, "Memory, objects only")
    hot = maybe(res, "Python API: list() of 100,000 instances (cache")
    unc = maybe(res, "Python API: list() of 100,000 instances (new host")
    polylith = ("Call cost", "Footprint", "Independent", "Interleaved")
    poly = [r for r in res if r["scenario"].startswith(polylith)]
    poly_met = all(r.get("met") is not False for r in poly)
    return {
        "GET32": times(get32["ratio"]),
        "GET32_V": verdict(get32),
        "POSTD": times(postd["ratio"]),
        "POSTD_V": verdict(postd),
        "POSTS": times(posts["ratio"]),
        "POSTS_V": verdict(posts),
        "KGGET": times(kg["ratio"]),
        "KGGET_V": verdict(kg),
        "CREATE": times(create["ratio"]),
        "CREATE_V": verdict(create),
        "TUNED": times(tuned["ratio"]),
        "TUNED_V": verdict(tuned),
        "CMANY": times(many["ratio"]),
        "SQL": times(sql["ratio"]),
        "SQL_V": verdict(sql),
        "PUB": ms(pub["value"]),
        "PUB_V": verdict(pub),
        "FAIL": f"{fail['value']:.0f} of {fail['baseline_value']:,.0f}",
        "FAIL_V": verdict(fail),
        "COLD": f"{times(cold['ratio'])} ({cold['value']:.2f} s vs {cold['baseline_value']:.2f} s)",
        "COLD_V": verdict(cold),
        "RSS": times(rss["ratio"]),
        "POLY_V": "met" if poly_met else "**missed**",
        "LIST": times(lst["ratio"]),
        # Targets added by issue 18: runs before it recorded no target for these rows.
        "LIST_V": verdict(lst) if lst.get("target_ratio") else "(no target in that run)",
        "POST1": times(post1["ratio"]),
        "POST1_V": verdict(post1) if post1.get("target_ratio") else "(no target in that run)",
        "CMANY_RATE": f"{rate['value']:,.0f} rows/s" if rate else f"({many['value']:,.0f} rows/s)",
        "CMANY_V": verdict(rate) if rate else NOT_RUN,
        # Added in the third pass on issue 18: earlier runs had no such baseline.
        "CMANY_ARROW": times(ceiling["ratio"]) if ceiling else NOT_RUN,
        "CMANY_ARROW_RATE": f"{ceiling['baseline_value']:,.0f} rows/s" if ceiling else NOT_RUN,
        # Added in the fourth pass: earlier runs timed 1,000 rows per call only.
        "CMANY1_ARROW": times(ceiling1["ratio"]) if ceiling1 else NOT_RUN,
        "CMANY1_ARROW_RATE": (f"{ceiling1['baseline_value']:,.0f} rows/s" if ceiling1 else NOT_RUN),
        "CMANY_RATE_WHAT": (
            "100k rows in one call" if rate and "one call" in rate["scenario"] else "1,000 per call"
        ),
        "RSS_OBJECTS": (
            f"{times(objects['ratio'])} its dict ({objects['value']:,.0f} against "
            f"{objects['baseline_value']:,.0f} bytes per row)"
            if objects
            else NOT_RUN
        ),
        "LIST_HOT": f"{hot['value']:.2f} s" if hot else NOT_RUN,
        "LIST_COLD": f"{unc['value']:.2f} s" if unc else NOT_RUN,
        "LIST_DB": f"{unc['details']['duckdb_fetch_s']:.2f} s" if unc else NOT_RUN,
        "LIST_HOT_V": verdict(hot) if hot else NOT_RUN,
        "LIST_COLD_V": verdict(unc) if unc else NOT_RUN,
        "RSS_V": verdict(rss) if rss.get("target_ratio") else "(no target in that run)",
        # Runs before the split measured the whole growth (pyarrow and DuckDB included).
        "RSS_WHAT": " (less DuckDB's own memory)" if rss_all else "",
        "RSS_ALL": (
            f" (all of it: {times(rss_all['ratio'])})"
            if rss_all
            else " from the next recorded run on"
        ),
        "SQLITE_RPS": f"{posts['baseline_value']:,.0f}",
    }


def polylith_rows(res: list[dict[str, Any]]) -> dict[str, str]:
    rel = find(res, "Call cost: relation")
    api = find(res, "Call cost: adapter's call")
    tput = find(res, "Call cost: throughput")
    port = find(res, "Call cost: a whole port call")
    foot = find(res, "Footprint: one host serving 10")
    ind = find(res, "Independent deploys")
    inter = find(res, "Interleaved redeploys")
    return {
        "REL": us(rel["value"]),
        "HTTP": us(rel["baseline_value"]),
        "REL_R": fraction(rel["ratio"]),
        "API": us(api["value"]),
        "API_R": fraction(api["ratio"]),
        "TPUT": f"{tput['value']:,.0f} calls/s",
        "HTPUT": f"{tput['baseline_value']:,.0f} calls/s",
        "TPUT_R": times(tput["ratio"]),
        "PORT": us(port["value"]),
        "PORTH": us(port["baseline_value"]),
        "PORT_R": times(port["ratio"]),
        "ONE": f"{foot['value']:.0f} MiB",
        "HOSTS": f"{foot['baseline_value']:,.0f} MiB",
        "FOOT_R": f"{times(foot['ratio'])} ({fraction(foot['ratio'])})",
        "IND": f"{ind['value']:.0f} of {ind['baseline_value']:,.0f}",
        "IND_OK": "yes" if ind.get("met") else "**no**",
        "INT": f"{inter['value']:.0f} of {inter['baseline_value']:,.0f}",
        "INT_OK": "yes" if inter.get("met") else "**no**",
    }


def cluster_rows(res: list[dict[str, Any]]) -> dict[str, str]:
    """Scale-out (issue 16): PostgreSQL throughput and the three-host cluster."""
    out: dict[str, str] = {}
    pg = {
        "PG_GET1": "GET by id c=1",
        "PG_GET32": "GET by id c=32",
        "PG_POST1": "POST create c=1",
        "PG_POST32": "POST create c=32",
    }
    for key, prefix in pg.items():
        duck = maybe(res, f"PostgreSQL host: HTTP {prefix}", "on DuckDB")
        hand = maybe(res, f"PostgreSQL host: HTTP {prefix}", "Starlette")
        out[key] = f"{duck['value']:,.0f} req/s" if duck else NOT_RUN
        out[key + "_D"] = times(duck["ratio"]) if duck else NOT_RUN
        out[key + "_S"] = times(hand["ratio"]) if hand else NOT_RUN
    stale = maybe(res, "cluster: stale-read window")
    spread = maybe(res, "cluster: a deploy reaching all")
    lb = maybe(res, "cluster: GET by id, c=32, 3 hosts behind HAProxy")
    out["STALE"] = ms(stale["value"]) if stale else NOT_RUN
    out["STALE_TRIP"] = ms(stale["baseline_value"]) if stale else NOT_RUN
    out["STALE_R"] = times(stale["ratio"]) if stale else NOT_RUN
    out["STALE_NOTES"] = stale["notes"] if stale else NOT_RUN
    out["SPREAD"] = ms(spread["value"]) if spread else NOT_RUN
    out["SPREAD_SELF"] = ms(spread["baseline_value"]) if spread else NOT_RUN
    out["SPREAD_R"] = times(spread["ratio"]) if spread else NOT_RUN
    out["LB"] = f"{lb['value']:,.0f} req/s" if lb else NOT_RUN
    out["LB_ONE"] = f"{lb['baseline_value']:,.0f} req/s" if lb else NOT_RUN
    out["LB_R"] = times(lb["ratio"]) if lb else NOT_RUN
    return out


def all_values(data: dict[str, Any]) -> dict[str, str]:
    """Every figure the README's tables name, from a ``results.json`` document."""
    fsync = data["machine"].get("fsync_ms")
    return {
        **benchmark_rows(data["results"]),
        **polylith_rows(data["results"]),
        **cluster_rows(data["results"]),
        "FSYNC": f"{fsync:.2f} ms" if fsync is not None else "(not recorded in that run)",
    }


def main() -> int:
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    values = all_values(data)
    readme = ROOT / "README.md"
    text = readme.read_text()
    missing: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            missing.add(key)
            return m.group(0)
        return values[key]

    # bench/README_tables.md holds each block with ``{{KEY}}`` placeholders; the filled
    # block replaces what sits between the README's markers, so a re-run overwrites old figures.
    template = (ROOT / "bench" / "README_tables.md").read_text()
    blocks = re.split(r"^<!-- block:(\w+) -->\n", template, flags=re.M)[1:]
    for name, body in zip(blocks[::2], blocks[1::2], strict=True):
        filled = re.sub(r"\{\{(\w+)\}\}", sub, body)
        start, end = f"<!-- bench:{name} -->\n", f"<!-- /bench:{name} -->"
        head, found, rest = text.partition(start)
        if not found or end not in rest:
            print(f"fill_readme: README has no {start.strip()} block", file=sys.stderr)
            return 1
        text = head + start + filled + end + rest.split(end, 1)[1]
    if missing:
        print(f"fill_readme: no value for {sorted(missing)}", file=sys.stderr)
        return 1
    readme.write_text(text)
    print(f"README benchmark tables filled from bench/results.json ({data['started']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
