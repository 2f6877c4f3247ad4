"""End to end: `microlib serve --datasource postgresql://...` of the example notebook,
SIGKILLed during concurrent creates, then started again: every acknowledged create is
there, and SQL speaks PostgreSQL. Real processes on loopback, a throwaway database."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.pg_support import temporary_database
from tests.serve_support import ORDERS, creates_until_killed, start_serve, stop

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url() -> Iterator[str]:
    with temporary_database() as url:
        yield url


def test_sigkill_during_creates_then_restart_on_postgres(pg_url: str, tmp_path: Path) -> None:
    shutil.copy(ORDERS, tmp_path / "orders_service.ipynb")
    args = ("--datasource", pg_url, "orders_service.ipynb")
    first = start_serve(tmp_path, *args)
    acknowledged = creates_until_killed(first)
    assert len(acknowledged) > 50
    second = start_serve(tmp_path, *args)
    try:
        with httpx.Client(timeout=10) as client:
            r = client.post(
                f"{second.api}/sql",
                json={
                    "sql": "SELECT id, items->0->>'price' AS price FROM orders "
                    "WHERE customer_id = $c",
                    "params": {"c": "k"},
                },
            )
        assert r.status_code == 200, r.text
        stored = {row[0] for row in r.json()["rows"]}
        missing = [i for i in acknowledged if i not in stored]
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged creates lost"
        assert {row[1] for row in r.json()["rows"]} == {"2"}
    finally:
        stop(second.proc)
