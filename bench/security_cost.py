"""What the security features cost, each against a baseline in the same run.

* ``GET /models/orders/{id}`` over loopback HTTP (one keep-alive client, sequential):
  JWT auth on (RS256, verified on every request) and scopes configured, vs the same
  request to a host with auth off; static API tokens vs auth off;
* a small ``host.sql`` query with the time limit on (a watchdog deadline per query) vs
  the same query with ``sql_timeout=0``; the same query on a raw DuckDB cursor, vs the
  whole ``host.sql`` path;
* the metadata fence on a query text seen for the first time (it is remembered after),
  vs the query itself on a raw DuckDB cursor.

Ratios of medians (lower is better for times). ``python bench/security_cost.py [--quick]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import Result, compared

COMMAND = "python bench/security_cost.py"


def _result(name: str, metric: str, unit: str, values, base, baseline: str) -> Result:
    return compared(name, metric, unit, values, base, baseline, COMMAND)


def run(quick: bool = False) -> list[Result]:
    import httpx

    from tests.http_support import serve_host
    from tests.jwt_support import SigningKey

    requests = 300 if quick else 2000
    rounds = 3 if quick else 5
    key = SigningKey.rsa("bench")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name in ("off", "jwt", "tokens"):
            (base / name).mkdir()
        (base / "issuer.pem").write_bytes(key.public_pem())
        off = serve_host(base / "off", broken=False)
        jwt_on = serve_host(
            base / "jwt",
            broken=False,
            jwt_key=str(base / "issuer.pem"),
            auth_scopes="read:*=viewer,write:*=clerk",
        )
        tokens = serve_host(base / "tokens", broken=False, auth_tokens="t0k3n=viewer+clerk")
        token = key.token(["viewer", "clerk"], aud=None, iss=None)
        auth = {
            "off": (off, {}),
            "jwt": (jwt_on, {"Authorization": f"Bearer {token}"}),
            "tokens": (tokens, {"Authorization": "Bearer t0k3n"}),
        }
        clients = {}
        ids = {}
        for name, (served, headers) in auth.items():
            c = httpx.Client(base_url=served.api, headers=headers, timeout=30)
            r = c.post("/models/orders", json={"items": [{"sku": "a", "price": 1}]})
            assert r.status_code == 201, r.text
            clients[name], ids[name] = c, r.json()["id"]

        def per_request(name: str) -> float:
            c, path = clients[name], f"/models/orders/{ids[name]}"
            start = time.perf_counter()
            for _ in range(requests):
                assert c.get(path).status_code == 200
            return (time.perf_counter() - start) / requests * 1e6

        times: dict[str, list[float]] = {name: [] for name in auth}
        for _ in range(rounds):  # interleaved: drift hits every side alike
            for name in auth:
                times[name].append(per_request(name))
        for c in clients.values():
            c.close()

        # SQL: the same small query through host.sql with and without the time limit.
        host = off.host
        queries = 300 if quick else 2000
        query = "SELECT count(*) FROM orders WHERE status = 'NEW'"
        from microlib_kernel.store.sql_guard import check_no_metadata

        con = host.datasource._con.cursor()  # type: ignore[attr-defined]

        def sql(timeout: float | None) -> float:
            start = time.perf_counter()
            for _ in range(queries):
                host.sql(query, timeout=timeout)
            return (time.perf_counter() - start) / queries * 1e6

        def fence() -> float:
            serialize = lambda text: con.execute(  # noqa: E731
                "SELECT json_serialize_sql(?)", [text]
            ).fetchone()[0]
            start = time.perf_counter()
            for _ in range(queries):
                check_no_metadata(query, serialize)
            return (time.perf_counter() - start) / queries * 1e6

        def raw() -> float:
            start = time.perf_counter()
            for _ in range(queries):
                con.execute(query).fetchall()
            return (time.perf_counter() - start) / queries * 1e6

        limited, unlimited, fenced, bare = [], [], [], []
        for _ in range(rounds):
            limited.append(sql(None))
            unlimited.append(sql(0))
            fenced.append(fence())
            bare.append(raw())
        for served in (off, jwt_on, tokens):
            served.host.close()

    return [
        _result(
            "HTTP GET by id, JWT auth (RS256) + scopes",
            "time per request",
            "µs",
            times["jwt"],
            times["off"],
            "same request, auth off",
        ),
        _result(
            "HTTP GET by id, static API tokens",
            "time per request",
            "µs",
            times["tokens"],
            times["off"],
            "same request, auth off",
        ),
        _result(
            "host.sql small query, 30 s time limit",
            "time per query",
            "µs",
            limited,
            unlimited,
            "same query, sql_timeout=0",
        ),
        _result(
            "host.sql small query, whole path",
            "time per query",
            "µs",
            limited,
            bare,
            "the query on a raw DuckDB cursor",
        ),
        _result(
            "SQL metadata fence, new query text (json_serialize_sql + walk)",
            "time per check",
            "µs",
            fenced,
            bare,
            "the query itself on a raw DuckDB cursor",
        ),
    ]


if __name__ == "__main__":
    results = run("--quick" in sys.argv)
    print(json.dumps([r.to_json() for r in results], indent=2))
