"""Scale-out (issue 16): three `microlib serve` hosts on one PostgreSQL and NATS.

* **Stale-read window**: a write (PATCH) through one host, then reads of the same id
  through another host, back to back, until one shows the new revision. The window is
  the time from the write's answer to the first fresh read; the baseline is one read
  round trip on that host, measured in the same loop. Also: how often the *first* read
  after the write was stale.
* **Deploy propagation**: ``POST /deploy`` of a new Order version to one host, then
  ``GET /config`` on the others until all serve it; the baseline is the deploy itself.
* **What three hosts on two cores can show**: GET by id at c=32 through HAProxy in front
  of all three, against one host directly. One host is one Python process (one core's
  worth of Python under the GIL); three can use both cores, but the load generator,
  HAProxy, PostgreSQL and NATS share them too, so this is not a scaling curve: that needs
  more machines (see the README).

Run: ``.venv/bin/python bench/cluster_bench.py [--quick]``. Needs PostgreSQL and NATS
(``MICROLIB_BENCH_POSTGRES``, ``MICROLIB_BENCH_NATS``); HAProxy (Debian) for the last
part, which is skipped without it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result
from http_bench import load
from procs import Serve, serve

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = str(ROOT / "notebooks" / "orders_service.ipynb")
PG = os.environ.get("MICROLIB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
NATS = os.environ.get("MICROLIB_BENCH_NATS", "nats://127.0.0.1:4222")
TOKEN = secrets.token_hex(16)
ORDER = {"customer_id": "c1", "items": [{"sku": "a", "qty": 1, "price": 3.5}]}
COMMAND = "python bench/cluster_bench.py"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stale_window(hosts: list[Serve], writes: int) -> dict:
    """Write through one host, read through the next until fresh."""
    windows, trips, first_stale = [], [], 0
    with httpx.Client(timeout=10) as c:
        oid = c.post(f"{hosts[0].api}/models/orders", json=ORDER).json()["id"]
        for host in hosts:
            c.get(f"{host.api}/models/orders/{oid}")  # every host caches it
        for n in range(writes):
            writer, reader = hosts[n % len(hosts)], hosts[(n + 1) % len(hosts)]
            url = f"/models/orders/{oid}"
            r = c.patch(writer.api + url, json={"status": "APPROVED" if n % 2 else "PENDING"})
            want = r.json()["revision"]
            written = time.perf_counter()
            reads = 0
            while True:
                t0 = time.perf_counter()
                got = c.get(reader.api + url).json()["revision"]
                trips.append(time.perf_counter() - t0)
                reads += 1
                if got >= want:
                    windows.append(time.perf_counter() - written)
                    break
                if time.perf_counter() - written > 10:
                    raise RuntimeError(f"{reader.url} still stale 10 s after the write")
            first_stale += reads > 1
    return {
        "p50": statistics.median(windows),
        "p99": pct(windows, 0.99),
        "max": max(windows),
        "trip_p50": statistics.median(trips),
        "trip_p99": pct(trips, 0.99),
        "first_stale": first_stale / writes,
    }


def _model_source() -> str:
    nb = json.loads(Path(NOTEBOOK).read_text())
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if text.startswith("%%microlib model"):
            return text.split("\n", 1)[1]
    raise RuntimeError("the notebook has no model cell")


def _active(c: httpx.Client, host: Serve) -> str | None:
    models = c.get(f"{host.api}/config").json()["models"]
    return next((m["active"] for m in models if m["name"] == "Order"), None)


def deploy_propagation(hosts: list[Serve], deploys: int) -> dict:
    source = _model_source()
    spreads, durations = [], []
    with httpx.Client(timeout=60) as c:
        for n in range(deploys):
            variant = source.replace(
                "    total: float = 0.0\n", f"    total: float = 0.0\n    bench_{n}: int = {n}\n"
            )
            t0 = time.perf_counter()
            r = c.post(f"{hosts[n % len(hosts)].api}/deploy", json={"source": variant,
                       "kind": "model"}, headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            answered = time.perf_counter()
            if r.status_code not in (200, 201):
                raise RuntimeError(f"deploy failed: {r.status_code} {r.text[:300]}")
            version = r.json()["published"][0]["version"]
            durations.append(answered - t0)
            while not all(_active(c, h) == version for h in hosts):
                if time.perf_counter() - answered > 30:
                    raise RuntimeError(f"{version} did not reach every host in 30 s")
                time.sleep(0.002)
            spreads.append(time.perf_counter() - answered)
    return {
        "p50": statistics.median(spreads),
        "max": max(spreads),
        "deploy_p50": statistics.median(durations),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def through_haproxy(hosts: list[Serve], folder: Path, rounds: int, duration: float) -> dict | None:
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if haproxy is None:
        return None
    port = free_port()
    servers = "\n".join(
        f"    server h{i} {h.url.removeprefix('http://')}" for i, h in enumerate(hosts)
    )
    cfg = folder / "haproxy.cfg"
    cfg.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n"
        f"    timeout server 30s\nfrontend api\n    bind 127.0.0.1:{port}\n"
        f"    default_backend hosts\nbackend hosts\n    balance roundrobin\n{servers}\n"
    )
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.5)
        with httpx.Client(timeout=10) as c:
            oid = c.post(f"{hosts[0].api}/models/orders", json=ORDER).json()["id"]
        path = f"/microlib/api/models/orders/{oid}"
        client = "wrk" if shutil.which("wrk") else "python"
        lb, one = [], []
        for _ in range(rounds):
            one.append(load(client, hosts[0].url + path, "GET", 32, duration, folder)["rate"])
            lb.append(load(client, f"http://127.0.0.1:{port}{path}", "GET", 32, duration,
                           folder)["rate"])  # fmt: skip
        return {"lb": statistics.median(lb), "one": statistics.median(one), "client": client,
                "lb_spread": (min(lb), max(lb)), "one_spread": (min(one), max(one))}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)


def drop_stream(cluster: str) -> None:
    """Delete the run's JetStream stream (the hosts made it; nothing else uses it)."""
    import asyncio

    import nats

    async def drop() -> None:
        nc = await nats.connect(NATS, connect_timeout=2)
        try:
            await nc.jetstream().delete_stream(f"MICROLIB_{cluster.upper()}")
        finally:
            await nc.close()

    try:
        asyncio.run(drop())
    except Exception as exc:  # a stream that was never made, or NATS went away
        print(f"could not delete the NATS stream of {cluster}: {exc}", file=sys.stderr)


def run(quick: bool) -> list[Result]:
    import psycopg

    flag = " --quick" if quick else ""
    db = f"microlib_bench_{secrets.token_hex(6)}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{db}"')
    cluster = f"bench{secrets.token_hex(4)}"
    env = {
        "MICROLIB_DATASOURCE": f"{PG}/{db}",
        "MICROLIB_BUS": NATS,
        "MICROLIB_BUS_CLUSTER": cluster,
        "MICROLIB_DEPLOY_TOKEN": TOKEN,
    }
    saved = {k: os.environ.get(k) for k in env}
    hosts: list[Serve] = []
    folder = Path(tempfile.mkdtemp(prefix="microlib-cluster-bench-"))
    try:
        os.environ.update(env)
        for i in range(3):
            os.environ["MICROLIB_NODE"] = f"h{i + 1}"
            (folder / f"h{i}").mkdir()
            hosts.append(serve(folder / f"h{i}", NOTEBOOK))
        stale = stale_window(hosts, 60 if quick else 400)
        spread = deploy_propagation(hosts, 3 if quick else 10)
        lb = through_haproxy(hosts, folder, 1 if quick else 3, 1.0 if quick else 2.0)
    finally:
        for host in hosts:
            host.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.environ.pop("MICROLIB_NODE", None)
        with psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        drop_stream(cluster)
        shutil.rmtree(folder, ignore_errors=True)
    results = [
        Result(
            scenario="cluster: stale-read window after a write on another host (p99)",
            metric="time to the first fresh read",
            value=stale["p99"] * 1000,
            unit="ms",
            baseline="one GET round trip on the reading host (p99)",
            baseline_value=stale["trip_p99"] * 1000,
            higher_is_better=False,
            command=COMMAND + flag,
            notes=f"p50 {stale['p50'] * 1000:.2f} ms, max {stale['max'] * 1000:.1f} ms; the "
            f"first read after the write was stale in {stale['first_stale']:.0%} of writes; "
            "3 hosts, PostgreSQL and NATS on one 2-core machine",
        ),
        Result(
            scenario="cluster: a deploy reaching all 3 hosts",
            metric="time from the deploy's answer until every host serves it",
            value=spread["p50"] * 1000,
            unit="ms",
            baseline="the deploy itself (POST /deploy, p50)",
            baseline_value=spread["deploy_p50"] * 1000,
            higher_is_better=False,
            command=COMMAND + flag,
            notes=f"max {spread['max'] * 1000:.0f} ms",
        ),
    ]
    if lb is not None:
        results.append(
            Result(
                scenario="cluster: GET by id, c=32, 3 hosts behind HAProxy (2 cores)",
                metric="requests per second",
                value=lb["lb"],
                unit="req/s",
                baseline="one host, directly",
                baseline_value=lb["one"],
                spread=lb["lb_spread"],
                baseline_spread=lb["one_spread"],
                command=COMMAND + flag,
                notes=f"load by {lb['client']}; 2 cores shared by wrk, HAProxy, PostgreSQL, "
                "NATS and the hosts: not a scaling curve",
            )
        )
    return results


if __name__ == "__main__":
    out = run("--quick" in sys.argv)
    print(json.dumps([r.to_json() for r in out], indent=2))
