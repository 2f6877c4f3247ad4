"""Shared fixtures: every test runs in its own folder with a clean environment.

Nothing is written to $HOME: Jupyter and IPython folders point into the test's
temporary directory, and MICROLIB_* variables from the developer's shell are removed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("MICROLIB_"):
            monkeypatch.delenv(key)
    home = tmp_path / "_home"
    home.mkdir()
    for var, sub in {
        "JUPYTER_CONFIG_DIR": "jupyter/config",
        "JUPYTER_DATA_DIR": "jupyter/data",
        "JUPYTER_RUNTIME_DIR": "jupyter/runtime",
        "IPYTHONDIR": "ipython",
        "npm_config_cache": "npm",
    }.items():
        path = home / sub
        path.mkdir(parents=True)
        monkeypatch.setenv(var, str(path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MICROLIB_SERVE", "0")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@requires(...)`` selects datasources only for tests that take the ``datasource``
    fixture (tests/contract); anywhere else it would be silently ignored, so it fails."""
    for item in items:
        if item.get_closest_marker("requires") and "datasource" not in getattr(
            item, "fixturenames", ()
        ):
            raise pytest.UsageError(
                f"{item.nodeid}: @requires(...) only applies to tests that use the "
                "`datasource` fixture (tests/contract/conftest.py)"
            )
