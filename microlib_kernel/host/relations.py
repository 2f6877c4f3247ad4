"""Relations between published models, resolved through each target's own datasource."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import MicrolibError

if TYPE_CHECKING:
    from ..domain.model import Model
    from .host import Host
    from .registry import ModelVersion


class RelationResolver:
    """Placeholder until the relations issue lands."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def resolve(
        self, mv: ModelVersion, instance: Model, name: str, create: list[dict[str, Any]]
    ) -> Any:
        raise MicrolibError("relations are not available yet")
