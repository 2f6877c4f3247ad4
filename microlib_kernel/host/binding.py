"""Binding an adapter call: the instance first, the caller's arguments, then services.

An adapter is ``adapter(instance, *args, **kwargs)``; every other parameter it declares
is filled by name: first from the framework's extras (``event`` for the triggering
event, ``error`` for a fallback), then from the services registered on the host. A
required parameter that nothing fills is a missing service, reported before the
adapter runs, with what to register.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import NotFound, PortUnbound, ValidationFailed
from .adapters import AdapterRegistry, ServiceRegistry

_SKIP = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)

#: Parameters the framework fills itself (never reported as missing services).
FRAMEWORK_PARAMETERS = ("event", "error")


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: pass what we have


def injectable(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters of ``fn`` after the instance that can be filled by name."""
    sig = _signature(fn)
    if sig is None:
        return []
    params = list(sig.parameters.values())[1:]
    return [p for p in params if p.kind not in _SKIP and p.kind != p.POSITIONAL_ONLY]


def required_services(fn: Callable[..., Any], services: ServiceRegistry) -> list[str]:
    """Services ``fn`` needs that are not registered (for status reports)."""
    return [
        p.name
        for p in injectable(fn)
        if p.default is p.empty and p.name not in FRAMEWORK_PARAMETERS and p.name not in services
    ]


def resolve(adapters: AdapterRegistry, name: str, what: str) -> Callable[[], Any]:
    """The adapter bound to ``name`` now (late binding).

    Raises:
        PortUnbound: nothing is registered under ``name``.
    """
    try:
        return adapters.get(name)
    except NotFound as exc:
        raise PortUnbound(
            f"{what}: {exc.message}. Register it with host.adapters.register({name!r}, fn) "
            f"or a '%%microlib adapter {name.split('.')[0]}' cell",
            adapter=name,
        ) from None


def bind(
    fn: Callable[..., Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    services: ServiceRegistry,
    extras: Mapping[str, Any],
    what: str,
    adapter: str,
    protect: bool = False,
) -> dict[str, Any]:
    """The keyword arguments to call ``fn(instance, *args, **result)`` with.

    Args:
        fn: the adapter.
        instance: the model instance (first argument).
        args, kwargs: what the caller passed.
        services: the host's services.
        extras: framework values offered by name (``event``, ``error``).
        what: names the port in messages (``Order.authorize``).
        adapter: the adapter's name (in messages).
        protect: refuse ``kwargs`` naming a service or framework parameter (request
            bodies must not replace what the host injects).

    Raises:
        ValidationFailed: ``args``/``kwargs`` do not fit the adapter's signature.
        PortUnbound: the adapter needs a service that is not registered.
    """
    sig = _signature(fn)
    if sig is None:
        return dict(kwargs)
    try:
        bound = sig.bind_partial(instance, *args, **kwargs)
    except TypeError as exc:
        raise ValidationFailed(
            f"{what}: arguments do not fit adapter {adapter}{sig}: {exc}", adapter=adapter
        ) from None
    if not sig.parameters:
        raise PortUnbound(
            f"{what}: adapter {adapter} must take the instance as its first parameter",
            adapter=adapter,
        )
    if protect:
        clash = sorted(k for k in kwargs if k in FRAMEWORK_PARAMETERS or k in services)
        if clash:
            raise ValidationFailed(
                f"{what}: {', '.join(clash)} cannot be passed in the request: injected by the host",
                adapter=adapter,
            )
    out = dict(kwargs)
    missing = []
    for param in injectable(fn):
        if param.name in bound.arguments:
            continue
        if param.name in extras:
            out[param.name] = extras[param.name]
        elif param.name in services:
            out[param.name] = services.get(param.name)
        elif param.default is param.empty:
            missing.append(param.name)
    if missing:
        known = ", ".join(services) or "none"
        names = ", ".join(repr(m) for m in missing)
        raise PortUnbound(
            f"{what}: adapter {adapter} needs service {names}, which is not registered "
            f"(registered services: {known}). Register it with "
            f"host.services.register({missing[0]!r}, obj) or a "
            f"'%%microlib service {missing[0]}' cell",
            adapter=adapter,
            missing_services=missing,
        )
    return out
