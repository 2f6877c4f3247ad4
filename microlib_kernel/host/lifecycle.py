"""A host's start and end: its settings, a new context, waiting for quiet, shutting down."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any

from ..config import GC_THRESHOLDS, Settings
from ..domain.events import EventBroker
from ..store.cache import InstanceCache
from ..store.registry import scheme_of
from .adapters import AdapterRegistry, ServiceRegistry
from .cluster import default_node_id
from .context import Clock, HostContext, SystemClock
from .loop import HostLoop
from .registry import VersionRegistry
from .repositories import Repositories

if TYPE_CHECKING:
    from .ports import PortRunner
    from .queries import SqlQueries
    from .rollout import Rollout

log = logging.getLogger("microlib_kernel.host")


def host_settings(settings: Settings | None, **given: Any) -> Settings:
    """``settings`` (else the environment's) with the ``Host(...)`` arguments given.

    Raises:
        DatasourceError: the datasource URL has an unknown scheme (before any thread
            starts).
    """
    if settings is None:
        settings = Settings.load(**given)
    else:
        settings = settings.replace(**{k: v for k, v in given.items() if v is not None})
    scheme_of(settings.datasource)
    if settings.tune_gc:
        import gc

        gc.set_threshold(*GC_THRESHOLDS)
    return settings


def new_context(settings: Settings, clock: Clock | None, rng: random.Random | None) -> HostContext:
    """A context with a new loop thread, registry, broker, cache and repositories."""
    clock = clock or SystemClock()
    rng = rng or random.Random()
    events, cache = EventBroker(), InstanceCache(settings.cache_size)
    return HostContext(
        settings=settings,
        loop=HostLoop(),
        registry=VersionRegistry(keep=settings.keep_versions, rng=rng),
        repositories=Repositories(settings, cache, events, clock.now),
        events=events,
        cache=cache,
        adapters=AdapterRegistry(),
        services=ServiceRegistry(),
        clock=clock,
        rng=rng,
        node=settings.node or default_node_id(),
    )


async def settle(ctx: HostContext, ports: PortRunner, timeout: float | None) -> None:
    """Wait until event handlers and the port flows they start are all done."""
    # Handlers start port flows and flows emit events: wait until both are quiet.
    async with asyncio.timeout(timeout):
        while True:
            await ctx.events.settle(None)
            await ports.settle()
            if not ctx.events.busy and not ports.busy:
                return


async def shut_down(
    ctx: HostContext, ports: PortRunner, rollout: Rollout, queries: SqlQueries
) -> None:
    """Let handlers finish (5 s), then close ports, bus, remotes, SQL, log and stores."""
    try:
        await settle(ctx, ports, timeout=5)
    except TimeoutError:
        log.warning("event handlers still running at close")
    await ports.close()
    if rollout.cluster is not None:
        await rollout.cluster.close()
    for remote in ctx.remotes.values():
        await remote.close()
    queries.service.close()
    if rollout.journal is not None:
        rollout.journal.close()
    await ctx.repositories.close()
    try:
        # The loop's worker threads (sources run at publish, sync commands, SQL)
        # end with the host, not at interpreter exit.
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), 10)
    except TimeoutError:
        log.warning("worker threads still busy at close")
