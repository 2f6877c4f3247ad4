"""The HTTP tests' common fixtures: a host serving on 127.0.0.1 (port 0) and a client.

A module that needs another host defines its own ``served``/``api``; pytest then uses
the module's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.http_support import Served, serve_host


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = serve_host(tmp_path)
    yield s
    s.host.close()


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.api, timeout=10) as client:
        yield client
