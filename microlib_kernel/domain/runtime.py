"""The port through which a published model reaches its host.

The domain defines this protocol; the host implements it (one runtime per published
model version). A model class that is not published has no runtime, and its data
operations say so clearly instead of failing deep inside.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .events import Event, Handler, Pattern, Subscription
    from .model import Model


class ModelRuntime(Protocol):
    """What a model class can ask of the host it is published to."""

    version: str

    def create(self, data: dict[str, Any], *, id: str | None = None) -> Awaitable[Model]: ...

    async def create_many(self, rows: builtins.list[dict[str, Any]]) -> builtins.list[Model]: ...

    async def find(self, id: str) -> Model: ...

    async def list(
        self,
        filters: dict[str, Any],
        *,
        limit: int | None = None,
        offset: int = 0,
        order: str | Sequence[str] | None = None,
    ) -> builtins.list[Model]: ...

    async def count(self, filters: dict[str, Any]) -> int: ...

    async def update(self, instance: Model, changes: dict[str, Any]) -> Model: ...

    async def delete(self, instance: Model) -> Model: ...

    async def emit(self, instance: Model | None, name: str, data: Any) -> Event: ...

    def on(self, pattern: Pattern, handler: Handler) -> Subscription: ...

    def sql(self, query: str, params: Any = None) -> Any: ...

    async def call_port(
        self, instance: Model, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    async def related(
        self, instance: Model, name: str, create: builtins.list[dict[str, Any]]
    ) -> Any: ...

    async def undo(self, instance: Model) -> Model: ...

    async def run_command(
        self,
        instance: Model,
        name: str,
        kwargs: dict[str, Any],
        roles: Iterable[str] | None = None,
    ) -> Any: ...
