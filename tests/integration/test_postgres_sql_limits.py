"""The host's SQL limits (issue 17) on a PostgreSQL host: time, rows, close."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from microlib_kernel.errors import BadQuery, QueryTimeout
from tests.host_support import HostOptions
from tests.models import make_models
from tests.pg_support import temporary_database


@pytest.fixture
def host_options() -> Iterator[HostOptions]:
    """A throwaway database, dropped once the host (torn down first) is closed."""
    with temporary_database() as url:
        yield HostOptions(url, settings={"sql_timeout": 0.5, "sql_max_rows": 10})


@pytest.fixture
def models(host: Host) -> None:
    """Order and Customer published on the host."""
    order, customer = make_models()
    host.publish([customer, order])


@pytest.mark.usefixtures("models")
def test_the_host_time_limit_stops_a_runaway_query(host: Host) -> None:
    start = time.monotonic()
    with pytest.raises(QueryTimeout, match=r"0\.5 s"):
        host.sql("SELECT pg_sleep(30)")
    assert time.monotonic() - start < 5
    assert host.sql("SELECT 1 AS one").to_dicts() == [{"one": 1}]  # the host still answers


@pytest.mark.usefixtures("models")
def test_http_answers_408_and_caps_rows(host: Host) -> None:
    host.serve(port=0)
    with httpx.Client(base_url=host.api_url, timeout=10) as api:
        slow = api.post("/sql", json={"sql": "SELECT pg_sleep(30)"})
        assert slow.status_code == 408 and slow.json()["error_type"] == "QueryTimeout"
        many = api.post("/sql", json={"sql": "SELECT generate_series(1, 1000) AS n"})
        assert many.status_code == 400 and "sql_max_rows" in many.json()["error"]
        few = api.post("/sql", json={"sql": "SELECT generate_series(1, 10) AS n"})
        assert few.status_code == 200


def test_close_stops_a_running_query(tmp_path: Path) -> None:
    with temporary_database() as url:
        settings = Settings.load(cwd=tmp_path, env={}, datasource=url, sql_timeout=0)
        host = Host(settings=settings)
        errors: list[BaseException] = []

        def runaway() -> None:
            try:
                host.sql("SELECT pg_sleep(60)")
            except BaseException as exc:  # what the caller sees when the host closes
                errors.append(exc)

        worker = threading.Thread(target=runaway)
        worker.start()
        time.sleep(0.5)
        start = time.monotonic()
        host.close()
        worker.join(15)
        assert not worker.is_alive() and time.monotonic() - start < 15
        assert errors and isinstance(errors[0], BadQuery)
