"""The contract suites run once per registered datasource (tests/datasource_support.py).

A test whose fixtures ask for ``datasource`` (``datasource_url`` does) is parametrized
here over the store registry, narrowed by its ``requires(...)`` marks; marks that
select no datasource fail the test instead of leaving it out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.datasource_support import Registered, selected


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "datasource" not in metafunc.fixturenames:
        return
    needs = frozenset(
        name for mark in metafunc.definition.iter_markers("requires") for name in mark.args
    )
    chosen = selected(needs)
    if not chosen:
        params = [pytest.param(needs, id="no-datasource")]
    else:
        params = [pytest.param(r, id=r.name) for r in chosen]
    metafunc.parametrize("datasource", params, indirect=True)


@pytest.fixture
def datasource(request: pytest.FixtureRequest) -> Registered:
    """The registered datasource this test runs on (parametrized above)."""
    if not isinstance(request.param, Registered):
        pytest.fail(f"no registered datasource declares {sorted(request.param)}")
    return request.param


@pytest.fixture
def datasource_url(datasource: Registered) -> Iterator[str]:
    """A URL to open ``datasource`` at, valid for the test."""
    with contextlib.ExitStack() as stack:
        yield datasource.url(stack)
