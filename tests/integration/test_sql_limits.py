"""SQL cannot stall the host: time limits, row caps, metadata fence, clean close."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from microlib_kernel.errors import BadQuery, QueryTimeout
from tests.http_support import serve_host

RUNAWAY_SORT = "SELECT * FROM range(100000000000) ORDER BY 1 DESC"
RUNAWAY_CTE = (
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"
)


def test_runaway_query_answers_408_while_the_host_keeps_serving(tmp_path: Path) -> None:
    served = serve_host(tmp_path, sql_timeout=1.5)
    try:
        answers: dict[str, httpx.Response] = {}

        def runaway() -> None:
            with httpx.Client(base_url=served.api, timeout=30) as c:
                answers["sql"] = c.post("/sql", json={"sql": RUNAWAY_SORT})

        start = time.monotonic()
        thread = threading.Thread(target=runaway)
        thread.start()
        time.sleep(0.3)
        with httpx.Client(base_url=served.api, timeout=5) as c:
            # Other requests are served while the query runs.
            r = c.post("/models/orders", json={"items": [{"sku": "a", "price": 1}]})
            assert r.status_code == 201, r.text
            assert c.get("/health").status_code == 200
            assert c.post("/sql", json={"sql": "SELECT count(*) FROM orders"}).json()["rows"] == [
                [1]
            ]
            assert "sql" not in answers  # the runaway is still running
        thread.join(20)
        elapsed = time.monotonic() - start
        r = answers["sql"]
        assert r.status_code == 408, r.text
        assert r.json()["error_type"] == "QueryTimeout"
        assert "1.5 s" in r.json()["error"]
        assert 1.4 <= elapsed < 6
    finally:
        served.host.close()


def test_host_sql_gets_the_same_limit_and_a_clear_error(tmp_path: Path) -> None:
    served = serve_host(tmp_path, sql_timeout=0.5)
    try:
        host = served.host
        with pytest.raises(QueryTimeout, match=r"limit of 0\.5 s"):
            host.sql(RUNAWAY_CTE)
        with pytest.raises(QueryTimeout, match=r"limit of 0\.2 s"):
            host.sql(RUNAWAY_SORT, timeout=0.2)
        assert host.sql("SELECT 41 + 1").rows == [(42,)]  # the cursor is usable again
    finally:
        served.host.close()


def test_close_while_a_runaway_query_runs_is_clean(tmp_path: Path) -> None:
    served = serve_host(tmp_path, sql_timeout=0)  # no time limit at all
    answers: dict[str, httpx.Response] = {}

    def runaway() -> None:
        with httpx.Client(base_url=served.api, timeout=30) as c:
            try:
                answers["sql"] = c.post("/sql", json={"sql": RUNAWAY_CTE})
            except httpx.HTTPError as exc:  # the server may be gone first
                answers["error"] = exc  # type: ignore[assignment]

    thread = threading.Thread(target=runaway)
    thread.start()
    time.sleep(0.5)
    start = time.monotonic()
    served.host.close()
    assert time.monotonic() - start < 10
    thread.join(20)
    assert served.host.closed
    if "sql" in answers:
        assert answers["sql"].status_code in (400, 503), answers["sql"].text
    # The database file was closed cleanly: another host opens it.
    again = serve_host(tmp_path, sql_timeout=1)
    try:
        assert again.host.sql("SELECT count(*) FROM orders").rows == [(0,)]
    finally:
        again.host.close()


def test_row_cap_and_metadata_over_http(tmp_path: Path) -> None:
    served = serve_host(tmp_path, sql_max_rows=1000, sql_max_bytes=1 << 20)
    try:
        with httpx.Client(base_url=served.api, timeout=10) as c:
            r = c.post("/sql", json={"sql": "SELECT * FROM range(1000)"})
            assert r.status_code == 200 and len(r.json()["rows"]) == 1000
            r = c.post("/sql", json={"sql": "SELECT * FROM range(100000000000)"})
            assert r.status_code == 400 and "more than 1000 rows" in r.json()["error"]
            r = c.post("/sql", json={"sql": "SELECT repeat('x', 2000000) AS big"})
            assert r.status_code == 400 and "larger than 1048576 bytes" in r.json()["error"]
            for query in (
                "SELECT * FROM pragma_database_list",
                "SELECT * FROM duckdb_settings()",
                "SELECT current_setting('temp_directory')",
            ):
                r = c.post("/sql", json={"sql": query})
                assert r.status_code == 400, query
                assert str(tmp_path) not in r.text
        # The row cap is for answers over HTTP; Python gets every row.
        assert len(served.host.sql("SELECT * FROM range(5000)")) == 5000
        with pytest.raises(BadQuery, match="machine or settings"):
            served.host.sql("SELECT * FROM duckdb_databases()")
    finally:
        served.host.close()


def test_memory_limit_is_applied(tmp_path: Path) -> None:
    served = serve_host(tmp_path, sql_memory_limit="300MB")
    try:
        served.host.sql("SELECT 1")
        con = served.host.datasource._con  # type: ignore[attr-defined]
        limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert limit.startswith("286")  # 300 MB in MiB
        with pytest.raises(BadQuery, match=r"memory|SQL error"):
            served.host.sql(
                "SELECT list(range) FROM range(200000000) GROUP BY range % 3", timeout=20
            )
    finally:
        served.host.close()


def test_sql_magic_gets_the_time_limit_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.integration.test_notebook_shell import usage_error
    from tests.notebook_support import fresh_shell

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROLIB_SQL_TIMEOUT", "0.3")
    monkeypatch.setenv("MICROLIB_SERVE", "0")
    with fresh_shell() as ip:
        start = time.monotonic()
        message = usage_error(ip, f"%%microlib sql\n{RUNAWAY_CTE}", capsys)
        assert time.monotonic() - start < 5
        assert "ran longer than its limit of 0.3 s" in message
