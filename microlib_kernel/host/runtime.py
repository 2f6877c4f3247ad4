"""The runtime a published model version gets: its data methods, hopping onto the host loop."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..domain.events import Event, Handler, Pattern, Subscription
from ..domain.query import build_query, parse_filters
from ..errors import MicrolibError

if TYPE_CHECKING:
    from ..domain.model import Model
    from ..sql_result import SqlResult
    from .commands import CommandRunner
    from .context import HostContext
    from .ports import PortRunner
    from .registry import ModelVersion
    from .relations import RelationResolver
    from .repository import Repository


def handler_key(model: str, pattern: Pattern, handler: Handler) -> tuple[Any, ...]:
    """Identity of a subscription made through ``Model.on``.

    Re-running a notebook cell defines a new function object with the same module and
    qualified name; keying on those makes the new subscription replace the old one.
    Lambdas are told apart by where they are written.
    """
    code = getattr(handler, "__code__", None)
    where = (
        (code.co_filename, code.co_firstlineno) if code and handler.__name__ == "<lambda>" else ()
    )
    name = getattr(handler, "__qualname__", None) or repr(handler)
    return (
        "model-on",
        model.lower(),
        str(pattern),
        getattr(handler, "__module__", ""),
        name,
        where,
    )


@dataclass(frozen=True)
class ModelServices:
    """The host services a model's class methods reach (one set per host)."""

    commands: CommandRunner
    ports: PortRunner
    relations: RelationResolver
    #: ``sql(query, params)``: the host's read-only SQL (what ``Host.sql`` runs).
    sql: Callable[[str, Any], SqlResult]


class VersionRuntime:
    """Implements :class:`~microlib_kernel.domain.runtime.ModelRuntime` for one version.

    Args:
        ctx: the context of the host the version is published on.
        mv: the version.
        services: the host's commands, ports, relations and SQL.
    """

    def __init__(self, ctx: HostContext, mv: ModelVersion, services: ModelServices) -> None:
        self.ctx = ctx
        self.mv = mv
        self.version = mv.version
        self.services = services

    @property
    def repo(self) -> Repository:
        return self.ctx.repository(self.mv.spec.endpoint)

    def create(self, data: dict[str, Any], *, id: str | None = None) -> Awaitable[Model]:
        """An awaitable of the created instance (``Model.create`` awaits it at once).

        From another loop it is a plain future of that loop, one coroutine frame less
        per create; the creates of one tick share one hop onto the host loop and one
        bulk write.
        """
        try:
            caller = asyncio.get_running_loop()
        except RuntimeError:
            # No loop yet (``asyncio.run(Order.create(...))``): a coroutine, run later.
            return self._create_one(data, id)
        if id is None and caller is not self.ctx.loop.loop:
            return self.ctx.loop.submit_batched(self.repo.create_batch, (self.mv, data), caller)
        return self._create_one(data, id)

    async def _create_one(self, data: dict[str, Any], id: str | None) -> Model:
        if id is None and not self.ctx.loop.in_loop():
            batched: Model = await self.ctx.loop.call_batched(
                self.repo.create_batch, (self.mv, data)
            )
            return batched
        instance, _ = await self.ctx.loop.call(self.repo.create, self.mv, data, id=id)
        return instance

    async def create_many(self, rows: Sequence[dict[str, Any]]) -> list[Model]:
        return await self.ctx.loop.call(self.repo.create_many, self.mv, rows)

    async def find(self, id: str) -> Model:
        return await self.ctx.loop.call(self.repo.get, self.mv, id)

    async def list(
        self,
        filters: dict[str, Any],
        *,
        limit: int | None = None,
        offset: int = 0,
        order: str | Sequence[str] | None = None,
    ) -> list[Model]:
        query = build_query(self.mv.cls, filters, limit=limit, offset=offset, order=order)
        return await self.ctx.loop.call(self.repo.list, self.mv, query)

    async def count(self, filters: dict[str, Any]) -> int:
        parsed = parse_filters(self.mv.cls, filters)
        return await self.ctx.loop.call(self.repo.count, parsed)

    async def update(self, instance: Model, changes: dict[str, Any]) -> Model:
        return await self.ctx.loop.call(
            self.repo.update, self.mv, instance.id, changes, expect_revision=instance.revision
        )

    async def delete(self, instance: Model) -> Model:
        return await self.ctx.loop.call(self.repo.delete, self.mv, instance.id)

    async def emit(self, instance: Model | None, name: str, data: Any) -> Event:
        if not isinstance(name, str) or not name.strip():
            raise MicrolibError(f"event names are non-empty strings, got {name!r}")
        event = Event(
            name,
            data,
            model=self.mv.name,
            model_id=instance.id if instance is not None else None,
        )
        return await self.ctx.loop.call(self._publish, event)

    async def _publish(self, event: Event) -> Event:
        return self.ctx.events.publish(event)

    def on(self, pattern: Pattern, handler: Handler) -> Subscription:
        return self.ctx.events.on(
            pattern,
            handler,
            key=handler_key(self.mv.name, pattern, handler),
            owner=("model", self.mv.name.lower()),
        )

    def sql(self, query: str, params: Any = None) -> Any:
        return self.services.sql(query, params)

    async def call_port(
        self, instance: Model, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return await self.ctx.loop.call(
            self.services.ports.call, self.mv, instance, name, args, kwargs
        )

    async def undo(self, instance: Model) -> Model:
        return await self.ctx.loop.call(self.services.ports.undo, self.mv, instance)

    async def related(
        self, instance: Model, name: str, create: builtins.list[dict[str, Any]]
    ) -> Any:
        return await self.ctx.loop.call(
            self.services.relations.resolve, self.mv, instance, name, create
        )

    async def run_command(
        self,
        instance: Model,
        name: str,
        kwargs: dict[str, Any],
        roles: Iterable[str] | None = None,
    ) -> Any:
        return await self.ctx.loop.call(
            self.services.commands.run, self.mv, instance, name, kwargs, roles
        )
