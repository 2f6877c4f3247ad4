"""The servers ``postgres_bench.py`` measures, one per process.

``python bench/pg_servers.py KIND FOLDER [DATABASE_URL]`` serves on 127.0.0.1 port 0,
prints its base URL on the first line of stdout, and serves until its stdin closes or
it gets SIGTERM. KIND is:

* ``microlib-pg``: a ``Host`` on the PostgreSQL database DATABASE_URL, one model ``Item``;
* ``microlib-duckdb``: the same host on a DuckDB file in FOLDER;
* ``starlette-pg``: a hand-written Starlette + uvicorn app on psycopg 3 (async pool of
  10): one ``INSERT`` per create (autocommit), one ``SELECT`` per GET by id. What one
  would write by hand: no validation, no cache, no events, no revisions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_servers import ROOT, serve_app, serve_host

_COLUMNS = ("id", "created_at", "updated_at", "version", "revision", "name", "qty")


def starlette_pg_app(url: str) -> Any:
    from contextlib import asynccontextmanager

    from psycopg.types.json import Jsonb
    from psycopg_pool import AsyncConnectionPool
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    pool = AsyncConnectionPool(
        url, min_size=10, max_size=10, open=False, kwargs={"autocommit": True}
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, created_at TIMESTAMPTZ, "
                "updated_at TIMESTAMPTZ, version TEXT, revision BIGINT, port_flow JSONB, "
                "compensation TEXT, name TEXT, qty BIGINT)"
            )
        yield
        await pool.close()

    async def get_one(request: Request) -> Response:
        async with pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM items WHERE id = %s",
                [request.path_params["id"]],
            )
            row = await cur.fetchone()
        if row is None:
            return JSONResponse({"error": "not found"}, 404)
        item = dict(zip(_COLUMNS, row, strict=True))
        item["created_at"] = item["created_at"].isoformat()
        item["updated_at"] = item["updated_at"].isoformat()
        return JSONResponse({**item, "port_flow": [], "compensation": None})

    async def create(request: Request) -> Response:
        data = json.loads(await request.body())
        now = dt.datetime.now(dt.UTC)
        item = {
            "id": uuid.uuid4().hex,
            "created_at": now,
            "updated_at": now,
            "version": "1.0.0",
            "revision": 1,
            "name": data["name"],
            "qty": data.get("qty", 0),
        }
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO items (id, created_at, updated_at, version, revision, port_flow, "
                "name, qty) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [*(item[k] for k in _COLUMNS[:5]), Jsonb([]), item["name"], item["qty"]],
            )
        body = {**item, "created_at": now.isoformat(), "updated_at": now.isoformat()}
        body |= {"port_flow": [], "compensation": None}
        return JSONResponse(body, 201, {"Location": f"{ROOT}/{item['id']}"})

    return Starlette(
        routes=[
            Route(f"{ROOT}/{{id}}", get_one, methods=["GET"]),
            Route(ROOT, create, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def serve_starlette_pg(url: str) -> None:
    serve_app(starlette_pg_app(url), lifespan="auto", on_term=True)


def main() -> None:
    kind, folder = sys.argv[1], Path(sys.argv[2])
    url = sys.argv[3] if len(sys.argv) > 3 else ""
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)  # the host's .microlib folder goes there
    if kind == "microlib-pg":
        serve_host(url)
    elif kind == "microlib-duckdb":
        serve_host(f"duckdb:///{folder}/microlib.duckdb")
    elif kind == "starlette-pg":
        serve_starlette_pg(url)
    else:
        raise SystemExit(f"unknown server kind {kind!r}")


if __name__ == "__main__":
    main()
