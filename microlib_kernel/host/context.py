"""The host's shared context: what the host's services and the HTTP edge read.

Every service of a host (commands, ports, relations, secrets, the publish pipeline, the
rollout, the cluster link) and every HTTP route gets this :class:`HostContext`, not the
:class:`~microlib_kernel.host.host.Host`: they see the registry, the repositories, the
events, the settings and the clock, and none of each other's internals. The ``Host`` is
the facade that builds one context and wires the services around it.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Settings
    from ..domain.events import EventBroker
    from ..store.base import DataSource
    from ..store.cache import InstanceCache
    from .adapters import AdapterRegistry, ServiceRegistry
    from .loop import HostLoop
    from .registry import VersionRegistry
    from .remote import RemoteModel
    from .repositories import Repositories
    from .repository import Repository


class Clock(Protocol):
    """Where a host reads time (tests inject a clock they move by hand)."""

    def monotonic(self) -> float:
        """Seconds from a fixed origin: circuit breakers and this process's flow leases
        (SQL and port-call time limits use the real clock)."""

    def now(self) -> dt.datetime:
        """The current UTC time: timestamps of rows, versions and deployments."""


class SystemClock:
    """The real clock: :func:`time.monotonic` and the UTC wall clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass
class HostState:
    """The host's lifecycle flags, read by ``/health`` and the publish checks.

    ``starting`` is set while a standalone host deploys its notebooks, ``draining`` while
    it shuts down (``/health`` answers 503 while either is set), ``closed`` once closed.
    """

    starting: bool = False
    draining: bool = False
    closed: bool = False


@dataclass(eq=False)
class HostContext:
    """What the services of one host share (see the module docstring).

    Attributes:
        settings: the host's settings.
        loop: the host loop (a thread running asyncio).
        registry: published models and their versions.
        repositories: the datasources and the repository of each table.
        events: the event broker.
        cache: the instance cache the repositories share.
        adapters: adapter functions by name.
        services: service objects adapters may ask for.
        clock: monotonic seconds and the UTC time.
        rng: the random source of route picks and retry jitter.
        node: this host's name on the bus and in flow leases.
        state: starting / draining / closed.
        remotes: models other hosts serve (``remote_models``), by lower-case name.
    """

    settings: Settings
    loop: HostLoop
    registry: VersionRegistry
    repositories: Repositories
    events: EventBroker
    cache: InstanceCache
    adapters: AdapterRegistry
    services: ServiceRegistry
    clock: Clock
    rng: random.Random
    node: str
    state: HostState = field(default_factory=HostState)
    remotes: dict[str, RemoteModel] = field(default_factory=dict)

    @property
    def datasource(self) -> DataSource:
        """The host's default datasource."""
        return self.repositories.default

    def repository(self, endpoint: str) -> Repository:
        """The repository of a table (raises ``NotFound`` when no model serves it)."""
        return self.repositories.get(endpoint)
