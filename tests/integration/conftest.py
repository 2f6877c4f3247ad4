"""The integration tests' common fixtures.

``host``: a host for the test, always closed afterwards. It is built from
``host_options`` (a DuckDB file in the test's folder by default); a module that needs
another datasource, settings or ``Host(...)`` arguments overrides ``host_options``::

    @pytest.fixture
    def host_options() -> HostOptions:
        return HostOptions("memory://", settings={"sql_timeout": 0.5})

``served``/``api``: a host serving on 127.0.0.1 (port 0) and a client. A module that
needs another served host defines its own ``served``/``api``; pytest then uses the
module's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from microlib_kernel import Host
from tests.host_support import HostOptions
from tests.http_support import Served, serve_host


@pytest.fixture
def host_options() -> HostOptions:
    """How ``host`` is built; modules override this fixture, never ``host``."""
    return HostOptions()


@pytest.fixture
def host(host_options: HostOptions) -> Iterator[Host]:
    """A host built from ``host_options``, closed after the test whatever happened."""
    h = host_options.build()
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = serve_host(tmp_path)
    yield s
    s.host.close()


@pytest.fixture
def api(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.api, timeout=10) as client:
        yield client
