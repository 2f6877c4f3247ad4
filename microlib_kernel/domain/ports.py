"""Port declarations: ``authorize = port("payments.authorize", consumes=..., ...)``.

A port is declared on a model class and bound to an adapter *by name*; the adapter is
looked up when the port is called (late binding). Declaring a port makes an awaitable
method on instances (``await order.authorize()``); running it is the host's job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

PortType = Literal["outbound", "inbound"]


@dataclass(frozen=True)
class BreakerConfig:
    """Circuit breaker thresholds of one port.

    Opens when, within ``window`` seconds, at least ``calls`` calls were made and at
    least ``error_rate`` percent of them failed; half-opens after ``cooldown`` seconds.
    """

    calls: int = 5
    error_rate: float = 50.0
    window: float = 10.0
    cooldown: float = 30.0
    fallback: str | None = None

    @classmethod
    def parse(cls, value: BreakerConfig | dict[str, Any] | bool | None) -> BreakerConfig | None:
        """Accept a config, a dict of its fields, ``True`` (defaults) or ``None``."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"circuit_breaker must be a dict, got {value!r}")
        unknown = set(value) - {"calls", "error_rate", "window", "cooldown", "fallback"}
        if unknown:
            raise TypeError(
                f"unknown circuit_breaker option(s) {sorted(unknown)}; "
                "valid: calls, error_rate, window, cooldown, fallback"
            )
        cfg = cls(**value)
        if cfg.calls < 1 or not 0 <= cfg.error_rate <= 100 or cfg.window <= 0 or cfg.cooldown < 0:
            raise TypeError(f"circuit_breaker thresholds out of range: {value!r}")
        return cfg

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "error_rate": self.error_rate,
            "window": self.window,
            "cooldown": self.cooldown,
            "fallback": self.fallback,
        }


@dataclass(frozen=True)
class PortSpec:
    """A declared port (data: comparable, printable, JSON-able via :meth:`to_json`)."""

    adapter: str
    name: str = ""
    consumes: str | None = None
    produces: str | None = None
    undo: str | None = None
    timeout: float | None = None
    retries: int = 0
    backoff: float = 0.1
    circuit_breaker: BreakerConfig | None = None
    disabled: bool = False
    type: PortType = "outbound"
    callback: Callable[..., Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "adapter": self.adapter,
            "consumes": self.consumes,
            "produces": self.produces,
            "undo": self.undo,
            "timeout": self.timeout,
            "retries": self.retries,
            "backoff": self.backoff,
            "circuit_breaker": self.circuit_breaker.to_json() if self.circuit_breaker else None,
            "disabled": self.disabled,
            "type": self.type,
            "callback": getattr(self.callback, "__qualname__", None),
        }


class PortDeclaration:
    """The class attribute ``port(...)`` returns; becomes a method on instances."""

    def __init__(self, spec: PortSpec) -> None:
        self.spec = spec

    def __set_name__(self, owner: type, name: str) -> None:
        self.spec = PortSpec(**{**self.spec.__dict__, "name": name})

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        name = self.spec.name

        async def call_port(*args: Any, **kwargs: Any) -> Any:
            return await type(instance)._runtime().call_port(instance, name, args, kwargs)

        call_port.__name__ = name
        call_port.__doc__ = f"Run port {name!r} (adapter {self.spec.adapter!r})."
        return call_port

    def __repr__(self) -> str:
        return f"port({self.spec.adapter!r}, name={self.spec.name!r})"


def port(
    adapter: str,
    *,
    consumes: str | None = None,
    produces: str | None = None,
    undo: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 0.1,
    circuit_breaker: BreakerConfig | dict[str, Any] | bool | None = None,
    disabled: bool = False,
    type: PortType = "outbound",
    callback: Callable[..., Any] | None = None,
) -> Any:
    """Declare a port on a model.

    Args:
        adapter: the adapter's full name, ``"payments.authorize"`` (looked up at call time).
        consumes: an event name; when an instance emits it, the port runs for that instance.
        produces: an event the port emits when it completes (chaining the next port).
        undo: the adapter that compensates this port in a saga.
        timeout: seconds before an attempt is cancelled (``None``: no limit).
        retries: retries after the first attempt; a timeout counts as a failed attempt.
        backoff: first retry delay in seconds; it doubles, with jitter.
        circuit_breaker: ``{"calls", "error_rate", "window", "cooldown", "fallback"}``.
        disabled: a disabled port is a no-op that returns the instance unchanged.
        type: ``"outbound"`` (default) or ``"inbound"`` (callable over HTTP).
        callback: ``callback(instance, result) -> changes`` to post-process the adapter result.

    Raises:
        TypeError: an option has the wrong type or range (reported at class definition).
    """
    if not isinstance(adapter, str) or "." not in adapter:
        raise TypeError(f"port adapter must be a name like 'payments.authorize', got {adapter!r}")
    if timeout is not None and (not isinstance(timeout, int | float) or not timeout > 0):
        raise TypeError(f"port timeout must be a positive number of seconds, got {timeout!r}")
    if not isinstance(retries, int) or retries < 0:
        raise TypeError(f"port retries must be a non-negative integer, got {retries!r}")
    if not isinstance(backoff, int | float) or backoff < 0 or math.isnan(backoff):
        raise TypeError(f"port backoff must be a non-negative number, got {backoff!r}")
    if type not in ("outbound", "inbound"):
        raise TypeError(f"port type must be 'outbound' or 'inbound', got {type!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"port callback must be callable, got {callback!r}")
    for label, value in (("consumes", consumes), ("produces", produces), ("undo", undo)):
        if value is not None and (not isinstance(value, str) or not value):
            raise TypeError(f"port {label} must be a non-empty string, got {value!r}")
    spec = PortSpec(
        adapter=adapter,
        consumes=consumes,
        produces=produces,
        undo=undo,
        timeout=float(timeout) if timeout is not None else None,
        retries=retries,
        backoff=float(backoff),
        circuit_breaker=BreakerConfig.parse(circuit_breaker),
        disabled=bool(disabled),
        type=type,
        callback=callback,
    )
    return PortDeclaration(spec)
