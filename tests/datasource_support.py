"""Every datasource in the store registry, and how the contract suites open each.

The contract suites (tests/contract) are parametrized over
:func:`registered_datasources`, not over a list of their own, so a store registered
later is tested without anyone remembering to add it. To open one the suites need a
URL: :data:`URL_FACTORIES` has one per datasource class; a registered datasource
without one fails the suites (never a silent skip).

Optional tests say what they need with :func:`requires` (capabilities the store
classes declare, ``DataSource.capabilities``) and run on the stores that declare it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from microlib_kernel.store import DataSource, available_schemes
from microlib_kernel.store.base import CAPABILITIES
from microlib_kernel.store.registry import datasource_class
from tests.pg_support import temporary_database

#: A URL to open a datasource at, in the test's folder (the working directory) or on
#: a service; what it sets up is undone when the stack closes.
UrlFactory = Callable[[contextlib.ExitStack], str]


def _postgres(stack: contextlib.ExitStack) -> str:
    # A throwaway database; skipped (or failed, MICROLIB_REQUIRE_SERVICES=1) without one.
    return stack.enter_context(temporary_database())


#: By the datasource class's own scheme (``DataSource.scheme``).
URL_FACTORIES: dict[str, UrlFactory] = {
    "memory": lambda stack: "memory://",
    "file": lambda stack: "file:///store-dir",
    "duckdb": lambda stack: "duckdb:///store.duckdb",
    "postgresql": _postgres,
}


@dataclass(frozen=True)
class Registered:
    """One datasource class of the registry, with every scheme that opens it.

    Attributes:
        schemes: the registered schemes (aliases: ``postgres`` and ``postgresql``).
        cls: the class, or ``None`` when its factory does not say (a plain function).
    """

    schemes: tuple[str, ...]
    cls: type[DataSource] | None

    @property
    def name(self) -> str:
        """The class's own scheme (the test id)."""
        return self.cls.scheme if self.cls is not None else self.schemes[0]

    @property
    def capabilities(self) -> frozenset[str]:
        return self.cls.capabilities if self.cls is not None else frozenset()

    def url(self, stack: contextlib.ExitStack) -> str:
        """A URL to open it at; fails the test when the suite has no way to make one."""
        if self.cls is None:
            pytest.fail(
                f"datasource scheme(s) {', '.join(self.schemes)}: the registry cannot tell "
                "its class (register a DataSource class's from_url), so the contract suite "
                "cannot read its capabilities"
            )
        factory = URL_FACTORIES.get(self.name)
        if factory is None:
            pytest.fail(
                f"datasource {self.name!r} ({self.cls.__qualname__}) is registered but the "
                "contract suite cannot open one: add a URL factory to "
                "tests/datasource_support.py URL_FACTORIES"
            )
        return factory(stack)


def registered_datasources() -> list[Registered]:
    """Every datasource class the registry opens, once each (aliases grouped)."""
    by_class: dict[object, list[str]] = {}
    classes: dict[object, type[DataSource] | None] = {}
    for scheme in available_schemes():
        cls = datasource_class(scheme)
        key: object = cls if cls is not None else scheme
        by_class.setdefault(key, []).append(scheme)
        classes[key] = cls
    return [Registered(tuple(schemes), classes[key]) for key, schemes in by_class.items()]


def requires(*capabilities: str) -> pytest.MarkDecorator:
    """Run a contract test only on the datasources declaring every one of ``capabilities``.

    Raises:
        ValueError: a name is not in ``CAPABILITIES`` (a typo would select nothing).
    """
    unknown = sorted(set(capabilities) - CAPABILITIES)
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")
    return pytest.mark.requires(*capabilities)


def selected(needs: frozenset[str]) -> list[Registered]:
    """The registered datasources declaring every capability in ``needs``."""
    return [r for r in registered_datasources() if needs <= r.capabilities]
