"""The machine's services (PostgreSQL, NATS, Redis) for tests that need them for real.

A test that needs a service it cannot reach is skipped with the reason, unless
``MICROLIB_REQUIRE_SERVICES=1`` (set by ``.ci/run``): then it fails, so CI can never go
green by skipping the real-service tests.
"""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.pg_support import REQUIRE

NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379/0"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str, host: str, port: int) -> None:
    """Skip (or, with MICROLIB_REQUIRE_SERVICES=1, fail) unless ``host:port`` answers."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE:
        pytest.fail(message + " (MICROLIB_REQUIRE_SERVICES=1)")
    pytest.skip(message)


NATS_START = [
    "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/nats-server",
    "--", "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server",
    "-l", "/var/log/nats-server.log",
]  # fmt: skip
NATS_STOP = ["start-stop-daemon", "--stop", "--oknodo", "--exec", "/usr/sbin/nats-server"]


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate()`` until true, or fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {timeout} s")


def stop_nats() -> None:
    """Stop the machine's NATS server (the caller must :func:`start_nats` in a finally)."""
    subprocess.run(NATS_STOP, check=True, capture_output=True, timeout=30)
    wait_until(lambda: not reachable("127.0.0.1", 4222, 0.2), 15, "NATS stopping")


def start_nats() -> None:
    """Start the machine's NATS server as the machine does, and wait until it answers."""
    subprocess.run(NATS_START, check=True, capture_output=True, timeout=30)
    wait_until(lambda: reachable("127.0.0.1", 4222, 0.2), 30, "NATS starting")
