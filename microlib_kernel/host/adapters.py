"""Adapters and services, registered by name and looked up when a port runs.

Adapters are functions named ``NAME.function`` (``payments.authorize``); services are
objects injected into adapters by keyword parameter name. Both registries are plain
name -> object maps: re-registering a name replaces it, and since ports resolve their
adapter at call time, that rebinds every model at once with no republish.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import MicrolibError, NotFound

_ADAPTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_SERVICE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AdapterRegistry:
    """``payments.authorize`` -> an (async or sync) function."""

    def __init__(self) -> None:
        self._fns: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # bumped by every change (ports can tell a rebind happened)

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        """Bind ``fn`` as adapter ``name`` (replacing any earlier one).

        Raises:
            MicrolibError: a malformed name or a non-callable.
        """
        if not isinstance(name, str) or not _ADAPTER_NAME.match(name):
            raise MicrolibError(f"adapter names look like 'payments.authorize', got {name!r}")
        if not callable(fn):
            raise MicrolibError(f"adapter {name} must be callable, got {fn!r}")
        with self._lock:
            self._fns[name] = fn
            self.generation += 1

    def register_module(
        self, prefix: str, namespace: dict[str, Any], module: str | None = None
    ) -> list[str]:
        """Bind every public top-level function of ``namespace`` as ``prefix.function``.

        Args:
            module: when given, only functions defined in that module are bound, not
                ones it imported (``from json import dumps`` is not an adapter).
        """
        names = []
        for attr, value in adapter_functions(namespace, module).items():
            self.register(f"{prefix}.{attr}", value)
            names.append(f"{prefix}.{attr}")
        return names

    def unregister(self, name: str) -> None:
        with self._lock:
            self._fns.pop(name, None)
            self.generation += 1

    def get(self, name: str) -> Callable[..., Any]:
        """The adapter bound to ``name``.

        Raises:
            NotFound: nothing is bound (the message lists what is).
        """
        fn = self._fns.get(name)
        if fn is None:
            known = ", ".join(sorted(self._fns)) or "none"
            raise NotFound(f"no adapter named {name!r}; registered adapters: {known}")
        return fn

    def find(self, name: str) -> Callable[..., Any] | None:
        return self._fns.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._fns

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._fns))

    def __len__(self) -> int:
        return len(self._fns)


class ServiceRegistry:
    """``payments_api`` -> a service object."""

    def __init__(self) -> None:
        self._objs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, name: str, obj: Any) -> None:
        """Register ``obj`` as service ``name`` (replacing any earlier one).

        Raises:
            MicrolibError: a name that is not an identifier (it must match a parameter).
        """
        if not isinstance(name, str) or not _SERVICE_NAME.match(name):
            raise MicrolibError(f"service names must be Python identifiers, got {name!r}")
        with self._lock:
            self._objs[name] = obj

    def unregister(self, name: str) -> None:
        with self._lock:
            self._objs.pop(name, None)

    def get(self, name: str) -> Any:
        if name not in self._objs:
            known = ", ".join(sorted(self._objs)) or "none"
            raise NotFound(f"no service named {name!r}; registered services: {known}")
        return self._objs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._objs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._objs))

    def __len__(self) -> int:
        return len(self._objs)


def adapter_functions(
    namespace: dict[str, Any], module: str | None = None
) -> dict[str, Callable[..., Any]]:
    """The public top-level functions of ``namespace`` (defined in ``module``, if given)."""
    return {
        attr: value
        for attr, value in namespace.items()
        if not attr.startswith("_")
        and inspect.isfunction(value)
        and (module is None or value.__module__ == module)
    }
