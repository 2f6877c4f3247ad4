"""The servers ``http_bench.py`` measures, one per process.

``python bench/http_servers.py KIND FOLDER`` serves on 127.0.0.1 port 0, prints its base
URL on the first line of stdout, and serves until its stdin closes (so it never outlives
the benchmark) or it gets SIGTERM. KIND is:

* ``microlib``: a ``Host`` on a DuckDB file in FOLDER with one model, ``Item``;
* ``dict``: a minimal hand-written Starlette app serving the same three routes from a
  dict (the overhead ceiling);
* ``duckdb``: the same app doing one DuckDB ``INSERT`` per create (the naive way);
* ``sqlite``: the same app doing one SQLite commit per create (WAL, synchronous=FULL).

The DuckDB and SQLite apps store every field of the item they answer with (the nine
columns of the host's table: its own fields and ``Item``'s).

The baselines validate nothing and build the same JSON as the host does for ``Item``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

ROOT = "/microlib/api/models/items"
# The fields a baseline stores: every field of the item it answers with, as the host's
# table does (before 2026-12-07 they left port_flow and compensation out, which made
# each DuckDB INSERT ~20% cheaper in instructions than the host's nine columns).
STORED = (
    "id", "created_at", "updated_at", "version", "revision", "port_flow", "compensation",
    "name", "qty",
)  # fmt: skip


def _wait_for_stdin_close(stop: Any) -> None:
    def watch() -> None:
        sys.stdin.read()
        stop()

    threading.Thread(target=watch, daemon=True).start()


def serve_host(datasource: str) -> None:
    """A host on ``datasource`` serving ``Item`` on a free port; prints its URL, runs until
    stdin closes or SIGTERM (the PostgreSQL bench's servers use it too)."""
    import signal

    from microlib_kernel import Host, Model

    class Item(Model, endpoint="items"):
        name: str
        qty: int = 0

    host = Host(datasource, port=0)
    host.publish(Item)
    print(host.serve(port=0), flush=True)
    done = threading.Event()
    _wait_for_stdin_close(done.set)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    host.close()


def baseline_app(kind: str, folder: Path) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    items: dict[str, dict[str, Any]] = {}
    write = _writer(kind, folder)

    async def get_one(request: Request) -> Response:
        item = items.get(request.path_params["id"])
        if item is None:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(item)

    async def listing(request: Request) -> Response:
        limit = int(request.query_params.get("__limit", "100"))
        return JSONResponse(list(itertools.islice(items.values(), limit)))

    async def create(request: Request) -> Response:
        data = json.loads(await request.body())
        now = dt.datetime.now(dt.UTC).isoformat()
        item = {
            "id": uuid.uuid4().hex,
            "created_at": now,
            "updated_at": now,
            "version": "1.0.0",
            "revision": 1,
            "port_flow": [],
            "compensation": None,
            "name": data["name"],
            "qty": data.get("qty", 0),
        }
        write(item)
        items[item["id"]] = item
        return JSONResponse(item, 201, {"Location": f"{ROOT}/{item['id']}"})

    return Starlette(
        routes=[
            Route(f"{ROOT}/{{id}}", get_one, methods=["GET"]),
            Route(ROOT, listing, methods=["GET"]),
            Route(ROOT, create, methods=["POST"]),
        ]
    )


def _writer(kind: str, folder: Path) -> Any:
    if kind == "dict":
        return lambda item: None
    if kind == "duckdb":
        import duckdb

        con = duckdb.connect(str(folder / "naive.duckdb"))
        con.execute(
            "CREATE TABLE items (id VARCHAR PRIMARY KEY, created_at TIMESTAMPTZ, "
            "updated_at TIMESTAMPTZ, version VARCHAR, revision BIGINT, port_flow VARCHAR[], "
            "compensation VARCHAR, name VARCHAR, qty BIGINT)"
        )

        def insert_duckdb(item: dict[str, Any]) -> None:
            con.execute(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [item[k] for k in STORED],
            )

        return insert_duckdb
    if kind == "sqlite":
        import sqlite3

        con = sqlite3.connect(str(folder / "naive.sqlite"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(
            "CREATE TABLE items (id TEXT PRIMARY KEY, created_at TEXT, updated_at TEXT, "
            "version TEXT, revision INTEGER, port_flow TEXT, compensation TEXT, name TEXT, "
            "qty INTEGER)"
        )

        def insert_sqlite(item: dict[str, Any]) -> None:
            values = [item[k] for k in STORED]
            values[5] = json.dumps(values[5])  # port_flow: SQLite has no list type
            con.execute("BEGIN")
            con.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            con.execute("COMMIT")

        return insert_sqlite
    raise SystemExit(f"unknown server kind {kind!r}")


def serve_app(app: Any, *, lifespan: str = "off", on_term: bool = False) -> None:
    """Serve ``app`` on a free port, print its URL, stop when stdin closes (or SIGTERM).

    uvicorn binds the port itself, as ``uvicorn.run(app, port=0)`` would.
    """
    import asyncio
    import signal

    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan=lifespan, log_level="warning", access_log=False
    )  # fmt: skip
    server = uvicorn.Server(config)

    def stop() -> None:
        server.should_exit = True

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"http://127.0.0.1:{port}", flush=True)
        await task

    _wait_for_stdin_close(stop)
    if on_term:
        signal.signal(signal.SIGTERM, lambda *_: stop())
    asyncio.run(run())


def serve_baseline(kind: str, folder: Path) -> None:
    serve_app(baseline_app(kind, folder))


def main() -> None:
    kind, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    if kind == "microlib":
        serve_host(f"duckdb:///{folder}/microlib.duckdb")
    else:
        serve_baseline(kind, folder)


if __name__ == "__main__":
    main()
