"""A throwaway PostgreSQL database per test, on the machine's server (127.0.0.1:5432).

Each database has a random name and is dropped afterwards. When the server cannot be
reached the test is skipped with the reason, unless ``MICROLIB_REQUIRE_SERVICES=1``
(CI sets it): then it fails, so a missing service is never a silent pass.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

SERVER = os.environ.get("MICROLIB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
# Read at import: the autouse fixture of tests/conftest.py removes MICROLIB_* variables
# before each test runs.
REQUIRE = os.environ.get("MICROLIB_REQUIRE_SERVICES") == "1"


def _admin() -> psycopg.Connection:
    return psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=3)


def unreachable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or ``None``."""
    try:
        with _admin():
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {SERVER}: {str(exc).strip().splitlines()[0]}"


def require_postgres() -> None:
    """Skip (or, with ``MICROLIB_REQUIRE_SERVICES=1``, fail) without PostgreSQL."""
    reason = unreachable()
    if reason is None:
        return
    if REQUIRE:
        pytest.fail(f"MICROLIB_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def temporary_database() -> Iterator[str]:
    """Create a database with a random name; yields its URL; drops it afterwards."""
    require_postgres()
    name = f"microlib_test_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
