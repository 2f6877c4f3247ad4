"""``Host``: the facade of a host. It builds the shared context and wires the services.

.. code-block:: python

    host = Host("duckdb:///.microlib/microlib.duckdb")
    host.publish(Order)                       # -> [Published(name='Order', version='1.0.0', ...)]
    order = await Order.create(items=[...])
    host.sql("SELECT status, count(*) FROM orders GROUP BY 1")
    host.close()

Admin methods are synchronous and thread-safe (they hop onto the host loop). There is
no global host: scripts and tests create their own, and two hosts never see each other.

The work is done elsewhere: :class:`~.context.HostContext` is what the services share,
:class:`~.publishing.PublishPipeline` publishes, :class:`~.rollout.Rollout` makes
deployment changes one at a time and records them, :class:`~.queries.SqlQueries` runs
SQL, and the HTTP edge gets a :class:`~.api.HostApi`, never the ``Host``.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..domain.events import Event
from ..domain.model import Model
from ..errors import MicrolibError, NotFound
from ..store.deployments import open_deployment_log
from .api import HostApi
from .commands import CommandRunner
from .config_view import ConfigView
from .context import Clock
from .deploy import Published
from .lifecycle import host_settings, new_context, settle, shut_down
from .ports import PortRunner
from .publishing import PublishPipeline
from .queries import SqlQueries
from .registry import ModelEntry
from .relations import RelationResolver
from .rollout import Rollout
from .runtime import ModelServices
from .secret_keeper import SecretKeeper
from .sql import SqlService, sql_limits
from .tokens import load_or_create_token

if TYPE_CHECKING:
    from ..sql_result import SqlResult
    from ..store.deployments import DeploymentLog
    from .cluster import ClusterLink
    from .deploy import Deployment
    from .repository import Change, Repository
    from .restore import RestoreReport

log = logging.getLogger("microlib_kernel.host")


class Host:
    """The in-process host of published models.

    Args:
        datasource: default datasource URL (``None``: settings, i.e.
            ``duckdb:///.microlib/microlib.duckdb`` unless ``MICROLIB_DATASOURCE`` says otherwise).
        api_root: path prefix of the HTTP API.
        port: default HTTP port of :meth:`serve`.
        bind: default bind address of :meth:`serve`.
        settings: a complete :class:`Settings` (the other arguments override it).
        clock: where time comes from (breakers, local flow leases, timestamps); tests
            inject one.
        rng: the random source of route picks and retry jitter; tests seed one.

    Raises:
        DatasourceError: the datasource cannot be opened (unknown scheme, locked file...).
    """

    def __init__(
        self,
        datasource: str | None = None,
        *,
        api_root: str | None = None,
        port: int | None = None,
        bind: str | None = None,
        settings: Settings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = host_settings(
            settings, datasource=datasource, api_root=api_root, port=port, bind=bind
        )
        self.ctx = ctx = new_context(settings, clock, rng)
        # The context's parts, for callers of the Host (the same objects, never rebound).
        self.settings, self.loop, self.node = settings, ctx.loop, ctx.node
        self.registry, self.events, self.cache = ctx.registry, ctx.events, ctx.cache
        self.adapters, self.services, self.clock = ctx.adapters, ctx.services, ctx.clock
        self.url: str | None = None
        self.server: Any = None
        self._deploy_token: str | None = None
        try:
            ctx.loop.run(ctx.repositories.open_default())
        except BaseException:
            ctx.loop.stop()
            raise
        self.datasource = ctx.datasource
        self.secrets = SecretKeeper(ctx)
        self.commands = CommandRunner(ctx)
        self.ports = PortRunner(ctx)
        self.relations = RelationResolver(ctx)
        self.queries = SqlQueries(ctx, SqlService(ctx.datasource, sql_limits(settings)))
        services = ModelServices(self.commands, self.ports, self.relations, self.queries.run)
        self.config_view = ConfigView(ctx, self.ports)
        pipeline = PublishPipeline(ctx, services, self.secrets, self.queries)
        self.rollout = Rollout(ctx, pipeline, self.ports, self.config_view, None)
        #: Models other hosts serve (``remote_models``), by lower-case name.
        self.remotes = ctx.remotes
        try:
            if settings.remote_models:  # (else httpx stays unimported: Lambda bundles lack it)
                from .remote import remote_models

                ctx.remotes = remote_models(settings, ctx.services)
            self.remotes = ctx.remotes
            self.rollout.journal = open_deployment_log(settings.datasource, settings)
            # Restart safety: what was deployed before serves again, as it was.
            ctx.loop.run(self.rollout.restore())
            if settings.bus:
                from .cluster import join_bus

                self.rollout.cluster = join_bus(
                    ctx, catch_up=self.rollout.caught_up, spawn=self.ports.spawn
                )
            ctx.loop.run(self._start_ports())
        except BaseException:
            self.close()
            raise

    async def _start_ports(self) -> None:
        self.ports.start()

    # -- what the context holds, for callers of the Host ---------------------------------

    @property
    def cluster(self) -> ClusterLink | None:
        """The link to the other hosts on the bus (``None``: no bus configured)."""
        return self.rollout.cluster

    @property
    def deployment_log(self) -> DeploymentLog | None:
        """The deployment log replayed at start."""
        return self.rollout.journal

    @property
    def deployments(self) -> collections.deque[Deployment]:
        """What was deployed here, newest last (``GET /deploy``)."""
        return self.rollout.history

    @property
    def restore_report(self) -> RestoreReport:
        """What the start-up replay of the deployment log did."""
        return self.rollout.restore_report

    @property
    def starting(self) -> bool:
        """Set while a standalone host deploys its notebooks (``/health`` answers 503)."""
        return self.ctx.state.starting

    @starting.setter
    def starting(self, value: bool) -> None:
        self.ctx.state.starting = value

    @property
    def draining(self) -> bool:
        """Set while the host shuts down (``/health`` answers 503, connections close)."""
        return self.ctx.state.draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self.ctx.state.draining = value

    @property
    def closed(self) -> bool:
        return self.ctx.state.closed

    def datasource_for(self, spec_datasource: str | None) -> str:
        """The URL a model's table lives on."""
        return self.ctx.repositories.datasource_for(spec_datasource)

    def repository(self, endpoint: str) -> Repository:
        """The repository of a table (it exists once a model using it was published)."""
        return self.ctx.repository(endpoint)

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener(change)`` after every committed write (cache coherence hook)."""
        self.ctx.repositories.on_change(listener)

    # -- publishing, versions and routes -------------------------------------------------

    def publish(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str = "model",
        name: str | None = None,
        version: str | None = None,
        who: str = "python",
    ) -> list[Published]:
        """Publish a model class, or source text of any kind.

        Args:
            obj: a ``Model`` subclass, several (published together: all or none), or
                source text.
            kind: ``model``, ``adapter``, ``service`` or ``module`` (for source text).
            name: required for adapters, services and modules.
            version: pin the version of every model published (default: next patch).
            who: recorded in the deployment log (``GET /deploy``).

        Returns:
            One :class:`Published` per model (or one for the adapter/service/module).

        Raises:
            DeployRefused: the source fails, defines nothing publishable, or a model's
                spec or schema change is refused. Nothing is published then.
        """
        return self.loop.run(
            self.publish_async(obj, kind=kind, name=name, version=version, who=who)
        )

    async def publish_async(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str = "model",
        name: str | None = None,
        version: str | None = None,
        who: str = "python",
    ) -> list[Published]:
        """:meth:`publish` for code already on the host loop (the HTTP deploy route)."""
        return await self.rollout.publish(obj, kind=kind, name=name, version=version, who=who)

    def unpublish(self, name: str, *, who: str = "python") -> None:
        """Remove a model's endpoints (its table and data stay; SQL still reads it)."""
        self.loop.run(self.unpublish_async(name, who=who))

    async def unpublish_async(self, name: str, *, who: str = "python") -> ModelEntry:
        """:meth:`unpublish` on the host loop; ``who`` goes to the deployment log."""
        return await self.rollout.unpublish(name, who=who)

    def rollback(
        self, name: str, version: str | None = None, *, who: str = "python"
    ) -> dict[str, Any]:
        """Route everything to ``version`` (default: the version before the active one).

        Returns:
            The model's ``/config`` entry.
        """
        return self.loop.run(self.rollback_async(name, version, who=who))

    async def rollback_async(
        self, name: str, version: str | None = None, *, who: str = "python"
    ) -> dict[str, Any]:
        """:meth:`rollback` on the host loop; ``who`` goes to the deployment log."""
        return await self.rollout.rollback(name, version, who=who)

    def route(
        self, name: str, weights: Mapping[str, float], *, who: str = "python"
    ) -> dict[str, Any]:
        """Split traffic by weight, e.g. ``{"1.0.0": 90, "1.0.1": 10}`` (sticky per id)."""
        return self.loop.run(self.route_async(name, weights, who=who))

    async def route_async(
        self, name: str, weights: Mapping[str, float], *, who: str = "python"
    ) -> dict[str, Any]:
        """:meth:`route` on the host loop; ``who`` goes to the deployment log."""
        return await self.rollout.route(name, weights, who=who)

    def model(self, name: str, version: str | None = None) -> type[Model]:
        """The class of a published model (its active version, or ``version``)."""
        entry = self.registry.get(name)
        if version is None:
            version = entry.active
            if version is None:
                raise NotFound(f"{entry.name} is not published")
        return entry.get(version).cls

    def config_entry(self, entry: ModelEntry) -> dict[str, Any]:
        """A model's ``/config`` entry."""
        return self.config_view.entry(entry)

    def config(self) -> dict[str, Any]:
        """``{"models": [...]}``: every published model (what ``GET /config`` answers)."""
        return self.config_view.all()

    # -- events and SQL ------------------------------------------------------------------

    async def publish_event(self, event: Event) -> Event:
        """Publish an event on the broker (on the host loop)."""
        return self.events.publish(event)

    async def idle(self, timeout: float | None = 10.0) -> None:
        """Wait until event handlers (and the port flows they run) have finished."""
        await self.loop.call(settle, self.ctx, self.ports, timeout)

    def sql(self, query: str, params: Any = None, *, timeout: float | None = None) -> SqlResult:
        """Read-only SQL over every model table (DuckDB; PostgreSQL on a postgresql:// host).

        Args:
            query: one ``SELECT``; tables are named by endpoints.
            params: ``{"name": value}`` for ``$name``, or a list for ``?``.
            timeout: seconds before the query is stopped (default: ``sql_timeout``;
                0: no limit).

        Raises:
            BadQuery: not a single read-only query, or a SQL error.
            QueryTimeout: the query ran past its time limit.
        """
        return self.queries.run(query, params, timeout=timeout)

    async def sql_async(
        self, query: str, params: Any = None, *, timeout: float | None = None, capped: bool = False
    ) -> SqlResult:
        """:meth:`sql` from the host loop; ``capped`` refuses answers over ``sql_max_rows``."""
        return await self.queries.run_async(query, params, timeout=timeout, capped=capped)

    # -- HTTP ----------------------------------------------------------------------------

    @property
    def deploy_token(self) -> str:
        """The token the deploy routes require: ``MICROLIB_DEPLOY_TOKEN``, else the one in
        ``.microlib/deploy-token`` (created with mode 0600 when missing)."""
        if self._deploy_token is None:
            self._deploy_token = load_or_create_token(
                self.settings.home_path, self.settings.deploy_token
            )
        return self._deploy_token

    @property
    def api(self) -> HostApi:
        """What the HTTP edge uses of this host."""
        return HostApi(
            self.ctx,
            self.commands,
            self.ports,
            self.relations,
            self.rollout,
            self.config_view,
            self.queries,
            lambda: self.deploy_token,
        )

    def serve(self, port: int | None = None, bind: str | None = None) -> str:
        """Serve the HTTP API from the host loop; returns the base URL (also ``host.url``).

        Args:
            port: TCP port (0 picks a free one; default: settings, 8707).
            bind: address (default: settings, 127.0.0.1).

        Raises:
            MicrolibError: the port is busy (the message says which).
        """
        # The one place the host reaches the HTTP edge (a declared import-linter exception).
        from ..http.server import start_server

        if self.server is not None:
            return self.url  # type: ignore[return-value]
        port = self.settings.port if port is None else port
        bind = bind or self.settings.bind
        _ = self.deploy_token  # written before the first request can need it
        self.server, self.url = self.loop.run(start_server(self.api, port, bind))
        return self.url

    def stop_serving(self) -> None:
        """Stop the HTTP server and free its port (idempotent)."""
        if self.server is None:
            return
        from ..http.server import stop_server

        server, self.server, self.url = self.server, None, None
        self.loop.run(stop_server(server))

    @property
    def api_url(self) -> str | None:
        """The API base URL (``url`` + ``api_root``) once serving."""
        return f"{self.url}{self.settings.api_root}" if self.url else None

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving, flush and close every datasource, stop the loop (idempotent)."""
        if self.closed:
            return
        # Stop running SQL first: a runaway query would otherwise hold its request (and
        # the server's graceful stop) up, then keep its connection busy.
        self.queries.service.interrupt()
        try:
            self.stop_serving()
        except Exception:
            log.exception("stopping the HTTP server failed")
        try:
            self.loop.run(shut_down(self.ctx, self.ports, self.rollout, self.queries), timeout=60)
        except Exception:
            log.exception("closing the host failed")
        finally:
            self.ctx.state.closed = True
            self.loop.stop()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else (self.url or "not serving")
        return f"<Host {self.datasource.describe()} {state}>"

    def describe(self) -> str:
        """One line: where data lives and where the API is."""
        return f"datasource {self.datasource.describe()}; API {self.api_url or 'not serving'}"


__all__ = ["Host", "MicrolibError", "Published"]
