"""Ports: running adapters for models, with timeouts, retries, breakers and sagas."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MicrolibError

if TYPE_CHECKING:
    from ..domain.model import Model
    from .host import Host
    from .registry import ModelEntry, ModelVersion


class PortRunner:
    """Placeholder until the ports issue lands: subscriptions are kept in sync (none yet)."""

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

    async def undo(self, mv: ModelVersion, instance: Model) -> Model:
        raise MicrolibError("undo is not available yet")

    async def close(self) -> None:
        return None
