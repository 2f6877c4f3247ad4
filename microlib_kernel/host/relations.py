"""Relations between published models, resolved through each target's own datasource.

Interface used by the rest of the host (the relations issue replaces this placeholder):

* ``await resolve(mv, instance, name, create)`` — ``await order.customer()`` (and with
  dicts in ``create``: create related instances and link them). Returns a ``Model``,
  ``None`` or a list of models.
* ``await lookup(mv, instance, name) -> RelationResult`` — for HTTP: ``value`` (model,
  list or None) and ``reason`` (None, or why the value is empty: target not published,
  related instance missing). Unknown relation -> ``NotFound``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MicrolibError

if TYPE_CHECKING:
    from ..domain.model import Model
    from .host import Host
    from .registry import ModelVersion


@dataclass(frozen=True)
class RelationResult:
    """A resolved relation: the related model(s), and why it is empty when it is."""

    value: Any
    reason: str | None = None


class RelationResolver:
    """Placeholder until the relations issue lands."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def resolve(
        self, mv: ModelVersion, instance: Model, name: str, create: list[dict[str, Any]]
    ) -> Any:
        raise MicrolibError("relations are not available yet")

    async def lookup(self, mv: ModelVersion, instance: Model, name: str) -> RelationResult:
        raise MicrolibError("relations are not available yet")
