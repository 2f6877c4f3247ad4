"""Ports: running adapters for models, with timeouts, retries, breakers and sagas.

Interface used by the rest of the host (the ports issue replaces this placeholder):

* ``sync(entry)`` — called after every publish/unpublish/rollback/route of a model:
  (re)subscribe the port listeners of the versions that serve, never duplicating.
* ``status(model, port) -> dict`` — breaker state etc., merged into ``/config``.
* ``await call(mv, instance, name, args, kwargs)`` — a port method call from Python.
* ``await call_inbound(mv, instance, name, kwargs)`` — ``POST .../{id}/ports/{port}``:
  only ``type="inbound"`` ports; unknown or not inbound -> ``NotFound``; failures raise
  ``PortFailed`` (502), ``BreakerOpen`` (503), ``PortTimeout`` (504). Returns the instance.
* ``await undo(mv, instance)`` — compensate (saga).
* ``await close()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MicrolibError

if TYPE_CHECKING:
    from ..domain.model import Model
    from .host import Host
    from .registry import ModelEntry, ModelVersion


class PortRunner:
    """Placeholder until the ports issue lands."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def sync(self, entry: ModelEntry) -> None:
        return None

    def status(self, model: str, port: str) -> dict[str, Any]:
        return {}

    async def call(
        self, mv: ModelVersion, instance: Model, name: str, args: Any, kwargs: Any
    ) -> Any:
        raise MicrolibError("ports are not available yet")

    async def call_inbound(
        self, mv: ModelVersion, instance: Model, name: str, kwargs: dict[str, Any]
    ) -> Model:
        raise MicrolibError("ports are not available yet")

    async def undo(self, mv: ModelVersion, instance: Model) -> Model:
        raise MicrolibError("undo is not available yet")

    async def close(self) -> None:
        return None
