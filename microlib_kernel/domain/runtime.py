"""The port through which a published model reaches its host.

The domain defines this protocol; the host implements it (one runtime per published
model version). A model class that is not published has no runtime, and its data
operations say so clearly instead of failing deep inside.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from .events import Event, Handler, Pattern, Subscription

#: The model class's instances. A type parameter rather than ``Model`` itself, because
#: ``model.py`` holds its runtime as a ``ModelRuntime[Model]``: naming ``Model`` here
#: would make the two modules import each other.
M = TypeVar("M", bound=BaseModel)


class ModelRuntime(Protocol[M]):
    """What a model class can ask of the host it is published to (``M``: its instances)."""

    version: str

    def create(self, data: dict[str, Any], *, id: str | None = None) -> Awaitable[M]: ...

    async def create_many(self, rows: builtins.list[dict[str, Any]]) -> builtins.list[M]: ...

    async def find(self, id: str) -> M: ...

    async def list(
        self,
        filters: dict[str, Any],
        *,
        limit: int | None = None,
        offset: int = 0,
        order: str | Sequence[str] | None = None,
    ) -> builtins.list[M]: ...

    async def count(self, filters: dict[str, Any]) -> int: ...

    async def update(self, instance: M, changes: dict[str, Any]) -> M: ...

    async def delete(self, instance: M) -> M: ...

    async def emit(self, instance: M | None, name: str, data: Any) -> Event: ...

    def on(self, pattern: Pattern, handler: Handler) -> Subscription: ...

    def sql(self, query: str, params: Any = None) -> Any: ...

    async def call_port(
        self, instance: M, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    async def related(
        self, instance: M, name: str, create: builtins.list[dict[str, Any]]
    ) -> Any: ...

    async def undo(self, instance: M) -> M: ...

    async def run_command(
        self,
        instance: M,
        name: str,
        kwargs: dict[str, Any],
        roles: Iterable[str] | None = None,
    ) -> Any: ...
