"""Request limits over real HTTP: SQL concurrency per client, deploy rate, open streams."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from microlib_kernel.http.limits import TokenBucket
from tests.http_support import serve_host
from tests.integration.test_sql_limits import RUNAWAY_SORT


def test_sql_concurrency_is_per_client(tmp_path: Path) -> None:
    s = serve_host(tmp_path, sql_concurrency=1, sql_timeout=2.0, auth_tokens="tok1=a,tok2=b")
    try:
        first: dict[str, httpx.Response] = {}

        def runaway() -> None:
            with httpx.Client(base_url=s.api, timeout=30) as c:
                first["r"] = c.post(
                    "/sql", json={"sql": RUNAWAY_SORT}, headers={"Authorization": "Bearer tok1"}
                )

        thread = threading.Thread(target=runaway)
        thread.start()
        time.sleep(0.4)
        with httpx.Client(base_url=s.api, timeout=10) as c:
            r = c.post("/sql", json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer tok1"})
            assert r.status_code == 429, r.text
            assert r.headers["Retry-After"] == "1"
            assert r.json()["error_type"] == "TooManyRequests"
            # Another client is not held up by the first one's query.
            r = c.post("/sql", json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer tok2"})
            assert r.status_code == 200
        thread.join(20)
        assert first["r"].status_code == 408
        with httpx.Client(base_url=s.api, timeout=10) as c:  # the slot was given back
            r = c.post("/sql", json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer tok1"})
            assert r.status_code == 200
    finally:
        s.host.close()


def test_deploy_requests_are_rate_limited_before_the_token_is_checked(tmp_path: Path) -> None:
    s = serve_host(tmp_path, deploy_rate=3)
    try:
        with httpx.Client(base_url=s.api, timeout=10) as c:
            codes = [c.get("/deploy", headers={"Authorization": "Bearer guess"}) for _ in range(4)]
        assert [r.status_code for r in codes] == [401, 401, 401, 429]
        assert 1 <= int(codes[-1].headers["Retry-After"]) <= 20
        assert "3 deploy requests a minute" in codes[-1].json()["error"]
    finally:
        s.host.close()


def test_event_streams_are_bounded(tmp_path: Path) -> None:
    s = serve_host(tmp_path, sse_max=1)
    try:
        with httpx.Client(base_url=s.api, timeout=10) as c:
            with c.stream("GET", "/events") as stream:
                assert stream.status_code == 200
                lines = stream.iter_lines()  # kept: dropping it closes the stream
                assert next(lines).startswith(": subscribed")
                r = c.get("/events")
                assert r.status_code == 503 and r.headers["Retry-After"] == "5"
                assert "sse_max" in r.json()["error"]
            deadline = time.monotonic() + 5
            while True:  # the server notices the closed stream shortly after
                with c.stream("GET", "/events") as again:
                    if again.status_code == 200 or time.monotonic() > deadline:
                        break
                time.sleep(0.05)
            assert again.status_code == 200
    finally:
        s.host.close()


def test_token_bucket_refills_continuously() -> None:
    bucket = TokenBucket(60)  # one a second, bursts of 60
    assert all(bucket.take("a", now=0.0) == 0 for _ in range(60))
    assert bucket.take("a", now=0.0) == 1.0
    assert bucket.take("b", now=0.0) == 0  # per client
    assert bucket.take("a", now=1.0) == 0
    assert bucket.take("a", now=1.5) == 0.5
