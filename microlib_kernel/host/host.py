"""``Host``: the composition root. It owns the loop, the datasources, the registry and the broker.

.. code-block:: python

    host = Host("duckdb:///.microlib/microlib.duckdb")
    host.publish(Order)                       # -> [Published(name='Order', version='1.0.0', ...)]
    order = await Order.create(items=[...])
    host.sql("SELECT status, count(*) FROM orders GROUP BY 1")
    host.close()

Admin methods are synchronous and thread-safe (they hop onto the host loop). There is
no global host: scripts and tests create their own, and two hosts never see each other.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextlib
import datetime as dt
import functools
import inspect
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ValidationError

from ..config import Settings
from ..domain.events import Event, EventBroker
from ..domain.model import FRAMEWORK_FIELDS, Model
from ..domain.types import ValueType
from ..errors import DatasourceError, DeployRefused, MicrolibError, NotFound, ServiceUnavailable
from ..store.base import Column, DataSource, TableSchema, WriteOp
from ..store.cache import InstanceCache
from ..store.deployments import DeploymentLog, DeploymentRecord, open_deployment_log
from ..store.registry import create_datasource, scheme_of
from .adapters import AdapterRegistry, ServiceRegistry, adapter_functions
from .cluster import default_node_id
from .commands import CommandRunner
from .deploy import (
    KINDS,
    Deployment,
    Published,
    install_module,
    installed_module,
    models_defined,
    reinstall_module,
    run_source,
    service_object,
)
from .loop import HostLoop
from .registry import ModelEntry, ModelVersion, VersionRegistry
from .repository import Change, Repository
from .restore import ModelState, RestoreReport, catch_up, restore
from .runtime import VersionRuntime
from .secret_keeper import SecretKeeper
from .sql import SqlService, sql_limits
from .tokens import load_or_create_token

if TYPE_CHECKING:
    from ..sql_result import SqlResult
    from .cluster import ClusterLink
    from .remote import RemoteModel

log = logging.getLogger("microlib_kernel.host")

_FRAMEWORK_COLUMNS = (
    Column("id", ValueType("string")),
    Column("created_at", ValueType("timestamp")),
    Column("updated_at", ValueType("timestamp")),
    Column("version", ValueType("string")),
    Column("revision", ValueType("integer"), 0, True),
    Column("port_flow", ValueType("list", item=ValueType("string")), [], True),
    Column("compensation", ValueType("string")),
)


def table_schema(mv: ModelVersion) -> TableSchema:
    """The table a model version needs: framework columns, then one per field."""
    user = tuple(Column(f.name, f.type, f.default, f.has_default) for f in mv.spec.fields.values())
    return TableSchema(mv.spec.endpoint, _FRAMEWORK_COLUMNS + user)


class Host:
    """The in-process host of published models.

    Args:
        datasource: default datasource URL (``None``: settings, i.e.
            ``duckdb:///.microlib/microlib.duckdb`` unless ``MICROLIB_DATASOURCE`` says otherwise).
        api_root: path prefix of the HTTP API.
        port: default HTTP port of :meth:`serve`.
        bind: default bind address of :meth:`serve`.
        settings: a complete :class:`Settings` (the other arguments override it).

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
    ) -> None:
        overrides: dict[str, Any] = {
            "datasource": datasource,
            "api_root": api_root,
            "port": port,
            "bind": bind,
        }
        if settings is None:
            settings = Settings.load(**overrides)
        else:
            settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
        self.settings = settings
        scheme_of(settings.datasource)  # a bad URL fails before any thread starts
        if settings.tune_gc:
            import gc

            from ..config import GC_THRESHOLDS

            gc.set_threshold(*GC_THRESHOLDS)
        self.events = EventBroker()
        self.cache = InstanceCache(settings.cache_size)
        self.registry = VersionRegistry(keep=settings.keep_versions)
        self.adapters = AdapterRegistry()
        self.services = ServiceRegistry()
        self.commands = CommandRunner(self)
        self.secrets = SecretKeeper(self)
        self.url: str | None = None
        self.server: Any = None
        # /health answers 503 while either is set: ``starting`` while a standalone host
        # is still deploying its notebooks, ``draining`` while it shuts down.
        self.starting = False
        self.draining = False
        self._datasources: dict[str, DataSource] = {}
        self._repos: dict[str, Repository] = {}
        self._change_listeners: list[Callable[[Change], None]] = []
        self._deploy_token: str | None = None
        self.deployments: collections.deque[Deployment] = collections.deque(maxlen=1000)
        # One publish (or rollback, route, unpublish) at a time: versions are numbered
        # and swapped in order, and two deploys of one model never interleave.
        self._deploy_lock = asyncio.Lock()
        #: The last deployment record this host applied (its own or another host's).
        self._log_seq = 0
        self._table_schemas: dict[tuple[int, str], TableSchema] = {}
        self._table_columns: dict[tuple[int, str], set[str]] = {}
        self._closed = False
        # The last source of each adapter, service and module (kind, name) -> text: a
        # starting host skips a notebook's unchanged sources (see _unchanged).
        self._sources: dict[tuple[str, str], str] = {}
        self.loop = HostLoop()
        try:
            self.datasource = self.loop.run(self._open(settings.datasource))
        except BaseException:
            self.loop.stop()
            raise
        self._sql = SqlService(self.datasource, sql_limits(settings))
        from .ports import PortRunner
        from .relations import RelationResolver

        #: This host's name on the bus and in flow leases.
        self.node = settings.node or default_node_id()
        self.cluster: ClusterLink | None = None
        self.ports = PortRunner(self)
        self.relations = RelationResolver(self)
        #: Models other hosts serve (``remote_models``), by lower-case name.
        self.remotes: dict[str, RemoteModel] = {}
        self.deployment_log: DeploymentLog | None = None
        self.restore_report = RestoreReport()
        try:
            self.remotes = self._remote_models()
            self.deployment_log = open_deployment_log(settings.datasource, settings)
            # Restart safety: what was deployed before serves again, as it was.
            records = self.deployment_log.load()
            self.restore_report = self.loop.run(restore(self, records))
            self._log_seq = max((r.seq for r in records), default=0)
            if settings.bus:
                self.cluster = self._join_bus()
            self.loop.run(self._start_background())
        except BaseException:
            self.close()
            raise

    def _remote_models(self) -> dict[str, RemoteModel]:
        if not self.settings.remote_models:
            return {}  # (and httpx stays unimported: a Lambda bundle does not carry it)
        from .remote import RemoteModel, parse_remote_models

        out = {}
        for name, url in parse_remote_models(self.settings.remote_models).items():
            remote = RemoteModel(name, url, token=self.settings.remote_token)
            out[name.lower()] = remote
            # Adapters reach it by declaring a keyword parameter named like the model.
            self.services.register(name.lower(), remote)
        return out

    async def _start_background(self) -> None:
        self.ports.start()

    def _join_bus(self) -> ClusterLink:
        from ..bus import create_bus
        from .cluster import ClusterLink, patterns

        s = self.settings
        link = ClusterLink(
            self,
            create_bus(s.bus, cluster=s.bus_cluster),
            node=self.node,
            forward=patterns(s.bus_forward),
            accept=patterns(s.bus_accept),
        )
        self.loop.run(link.open(), timeout=30)
        return link

    # -- datasources and repositories ----------------------------------------------------------

    async def _open(self, url: str) -> DataSource:
        store = self._datasources.get(url)
        if store is None:
            store = create_datasource(url, self.settings)
            await store.open()
            self._datasources[url] = store
        return store

    def datasource_for(self, spec_datasource: str | None) -> str:
        """The URL a model's table lives on."""
        return spec_datasource or self.settings.datasource

    def repository(self, endpoint: str) -> Repository:
        """The repository of a table (it exists once a model using it was published)."""
        try:
            return self._repos[endpoint]
        except KeyError:
            raise NotFound(f"no model serves endpoint {endpoint!r}") from None

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener(change)`` after every committed write (cache coherence hook)."""
        self._change_listeners.append(listener)

    def _notify_change(self, change: Change) -> None:
        for listener in self._change_listeners:
            listener(change)

    # -- publishing -------------------------------------------------------------------------

    def publish(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str = "model",
        name: str | None = None,
        version: str | None = None,
    ) -> list[Published]:
        """Publish a model class, or source text of any kind.

        Args:
            obj: a ``Model`` subclass, several (published together: all or none), or
                source text.
            kind: ``model``, ``adapter``, ``service`` or ``module`` (for source text).
            name: required for adapters, services and modules.
            version: pin the version of every model published (default: next patch).

        Returns:
            One :class:`Published` per model (or one for the adapter/service/module).

        Raises:
            DeployRefused: the source fails, defines nothing publishable, or a model's
                spec or schema change is refused. Nothing is published then.
        """
        return self.loop.run(self.publish_async(obj, kind=kind, name=name, version=version))

    async def publish_async(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str = "model",
        name: str | None = None,
        version: str | None = None,
        who: str = "python",
    ) -> list[Published]:
        """:meth:`publish` for code already on the host loop (the HTTP deploy route).

        Args:
            who: recorded in the deployment log (``GET /deploy``).
        """
        async with self._deploying():
            unchanged = self._unchanged(obj, kind, name, version) if self.starting else None
            if unchanged is not None:
                return unchanged
            published = await self._publish(obj, kind=kind, name=name, version=version, who=who)
            self._log(kind, [p.name for p in published], [p.version for p in published], who)
        return published

    def _unchanged(
        self, obj: object, kind: str, name: str | None, version: str | None
    ) -> list[Published] | None:
        """What a starting host already serves from this very source, if anything.

        ``microlib serve NOTEBOOK`` redeploys its notebooks at every start, after the
        host restored its deployment log: a source identical to the newest version of a
        model, or to a version that takes traffic, publishes nothing new, so routes,
        rollbacks and pins made since survive the restart. Adapter, service and module
        sources identical to the last one deployed under their name are skipped too.
        """
        if not isinstance(obj, str):
            return None
        if kind != "model":
            same = name is not None and self._sources.get((kind, name)) == obj
            return [Published(name, None, None)] if same and name is not None else None
        out = []
        for entry in self.registry.entries():
            for mv in entry.versions.values():
                serving = mv is entry.latest() or mv.version in entry.routes
                if mv.source == obj and serving and version in (None, mv.version):
                    out.append(Published(mv.name, mv.version, mv.spec.endpoint))
                    break
        return out or None

    async def _record(self, record: DeploymentRecord) -> None:
        """Append ``record`` to the deployment log before the change is acknowledged.

        Raises:
            ServiceUnavailable: the log refused it (the caller then changes nothing).
        """
        if self.deployment_log is None:
            return
        try:
            done = await asyncio.to_thread(self.deployment_log.append, record)
            self._log_seq = max(self._log_seq, done.seq)
        except DatasourceError as exc:
            # Not recorded means not done: the caller changes nothing, and says so.
            raise ServiceUnavailable(
                f"the deployment could not be recorded: {exc.message}; nothing was changed, "
                "try again",
                kind=record.kind,
            ) from None

    @contextlib.asynccontextmanager
    async def _deploying(self) -> AsyncIterator[None]:
        """One deployment change at a time, here and, on a shared log, in the cluster.

        On a log several hosts share (PostgreSQL) the change runs under the log's lock,
        after applying what other hosts appended, so versions are numbered in one
        sequence; afterwards the bus tells the other hosts to catch up.
        """
        async with self._deploy_lock:
            log_ = self.deployment_log
            shared = log_ is not None and log_.shared
            if log_ is not None and shared:
                locking = asyncio.ensure_future(asyncio.to_thread(log_.lock))
                try:
                    # Shielded: if this deploy is cancelled while it waits (the server
                    # stops), the lock still lands in the worker thread; give it back then.
                    await asyncio.shield(locking)
                except asyncio.CancelledError:
                    locking.add_done_callback(lambda t: _unlock_if_taken(t, log_))
                    raise
                except DatasourceError as exc:
                    raise ServiceUnavailable(
                        f"cannot deploy now: {exc.message}; nothing was changed, try again"
                    ) from None
            try:
                if shared:
                    try:
                        await self._catch_up()
                    except DatasourceError as exc:
                        raise ServiceUnavailable(
                            f"cannot deploy now: {exc.message}; nothing was changed, try again"
                        ) from None
                before = self._log_seq
                yield
                if self.cluster is not None and self._log_seq > before:
                    self.cluster.announce_deploy(self._log_seq)
            finally:
                if log_ is not None and shared:
                    await asyncio.to_thread(log_.unlock)

    async def _catch_up(self) -> RestoreReport:
        """Apply deployment records other hosts appended since we last looked."""
        log_ = self.deployment_log
        if log_ is None:
            return RestoreReport()
        records = await asyncio.to_thread(log_.load)
        if not records or records[-1].seq <= self._log_seq:
            return RestoreReport()
        report = await catch_up(self, records, self._log_seq)
        self._log_seq = records[-1].seq
        return report

    async def caught_up(self, seq: int | None = None) -> None:
        """Apply deployment records other hosts appended: up to ``seq``, which another
        host announced, or whatever there is (``None``: after the bus was down)."""
        if seq is not None and seq <= self._log_seq:
            return
        async with self._deploy_lock:
            try:
                await self._catch_up()
            except DatasourceError as exc:
                # The next announcement, or this host's next deploy, catches up.
                log.warning("could not read the deployment log: %s", exc.message)

    def _log(self, kind: str, names: list[str], versions: list[str | None], who: str) -> None:
        self.deployments.append(
            Deployment(
                time=dt.datetime.now(dt.UTC), kind=kind, names=names, versions=versions, who=who
            )
        )

    async def _publish(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str,
        name: str | None,
        version: str | None,
        who: str = "python",
    ) -> list[Published]:
        if kind not in KINDS:
            raise DeployRefused(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(obj, type) and issubclass(obj, Model):
            return await self._publish_models([obj], version, None)
        if isinstance(obj, list | tuple) and obj and all(_is_model_class(c) for c in obj):
            return await self._publish_models(list(obj), version, None)
        if not isinstance(obj, str):
            raise DeployRefused(
                f"publish takes a Model subclass, a list of them, or source text, got {obj!r}"
            )
        if kind != "model" and not (isinstance(name, str) and name.isidentifier()):
            raise DeployRefused(f"publishing a {kind} needs a name that is a Python identifier")
        # The source runs in a worker thread: whatever it does at import time (a slow
        # import, a big computation) never stalls the loop that serves requests.
        if kind == "model":
            module = await asyncio.to_thread(run_source, obj, kind="model", name=name)
            classes = models_defined(module)
            if not classes:
                raise DeployRefused("the model source defines no Model subclass")
            try:
                return await self._publish_models(classes, version, obj, who=who)
            except DeployRefused as exc:
                raise with_class_line(exc, obj, classes) from None
        assert name is not None
        await self._install_source(
            obj, kind, name, DeploymentRecord(kind, (name,), (None,), who=who, source=obj)
        )
        return [Published(name, None, None)]

    async def _install_source(
        self, source: str, kind: str, name: str, record: DeploymentRecord | None
    ) -> None:
        """Run an adapter, service or module source, record it (unless restoring), bind it."""
        if kind == "adapter":
            module = await asyncio.to_thread(run_source, source, kind="adapter", name=name)
            if not adapter_functions(vars(module), module.__name__):
                raise DeployRefused(f"adapter source {name} defines no function")
            if record is not None:
                await self._record(record)
            self.adapters.register_module(name, vars(module), module.__name__)
        elif kind == "service":
            service = await asyncio.to_thread(_run_service, source, name)
            if record is not None:
                await self._record(record)
            self.services.register(name, service)
        else:
            previous = installed_module(name)
            await asyncio.to_thread(install_module, name, source)
            if record is not None:
                try:
                    await self._record(record)
                except BaseException:
                    reinstall_module(name, previous)  # not recorded, so not done
                    raise
        self._sources[(kind, name)] = source

    async def _publish_models(
        self,
        classes: list[type[Model]],
        version: str | None,
        source: str | None,
        *,
        who: str = "python",
        restoring: Mapping[str, str] | None = None,
    ) -> list[Published]:
        """Check, prepare, record and swap in new versions of ``classes`` (all or none).

        Args:
            restoring: lower-case name -> recorded version, when a starting host
                re-creates versions from its log: the recorded numbers are used, stored
                rows are neither re-checked nor migrated again, and nothing is recorded.
        """
        # Everything is checked before anything is swapped in: all models or none.
        now = dt.datetime.now(dt.UTC)
        planned: list[ModelVersion] = []
        names = [c.__name__.lower() for c in classes]
        if len(set(names)) != len(names):
            raise DeployRefused("a source defines the same model twice")
        for cls in classes:
            self._check_binding(cls)
            spec = cls.spec()
            if restoring is None:
                # (A restore replays in log order before unpublishes apply: an endpoint
                # may be taken over from a model that is unpublished at the end.)
                self.registry.check_endpoint(spec.name, spec.endpoint)
            number = (
                restoring[spec.name.lower()]
                if restoring is not None
                else self.registry.next_version(spec.name, version)
            )
            mv = ModelVersion(spec.name, number, cls, spec, now, source)
            planned.append(mv)
        self.commands.check(planned)
        self.secrets.check(planned)
        self.relations.check(planned)
        prepared = []
        for mv in planned:
            store = await self._open(self.datasource_for(mv.spec.datasource))
            schema = table_schema(mv)
            if restoring is None:
                await self._check_evolution(mv, store, schema)
            await self.secrets.check_stored(mv, store)
            prepared.append((mv, store, schema))
        for mv, store, schema in prepared:
            await self._ensure_table(store, schema)
            repo = self._repos.get(schema.name)
            if repo is None or repo.store is not store:
                repo = Repository(
                    schema.name, mv.name, store, self.cache, self.events, self._notify_change
                )
                repo.codec = self.secrets.codec(schema.name)
                self._repos[schema.name] = repo
            repo.model = mv.name
            repo.defaults = column_defaults(self.registry.find(mv.name), mv)
            if mv.spec.has_migrate and restoring is None:
                await self._migrate(mv, repo)
        if source is not None and restoring is None:
            # Durable before it serves: a version that is live was recorded.
            await self._record(
                DeploymentRecord(
                    "model",
                    tuple(mv.name for mv in planned),
                    tuple(mv.version for mv in planned),
                    now,
                    who,
                    source,
                    tuple(mv.spec.endpoint for mv in planned),
                )
            )
        out = []
        for _, store, _ in prepared:
            if self._sql.needs_mirror(store):
                self._sql.mirrors = True
        for mv, _, _ in prepared:
            mv.runtime = VersionRuntime(self, mv)
            mv.cls.__microlib_runtime__ = mv.runtime
            entry = self.registry.add(mv)
            if restoring is None:
                self.ports.sync(entry)  # a restore syncs once, with the final routes
            out.append(Published(mv.name, mv.version, mv.spec.endpoint))
            log.info("published %s %s at %s", mv.name, mv.version, mv.spec.endpoint)
        return out

    # -- restart safety (see restore.py) --------------------------------------------------------

    async def restore_source(
        self, record: DeploymentRecord, wanted: Mapping[str, str]
    ) -> list[str]:
        """Run one recorded source again; models re-create the versions in ``wanted``.

        Returns:
            ``"Name version"`` of each version re-created (or the source's kind and name).
        """
        assert record.source is not None
        name = record.names[0] if record.names else ""
        if record.kind != "model":
            await self._install_source(record.source, record.kind, name, None)
            return [f"{record.kind} {name}"]
        module = await asyncio.to_thread(run_source, record.source, kind="model", name=None)
        classes = [c for c in models_defined(module) if c.__name__.lower() in wanted]
        missing = set(wanted) - {c.__name__.lower() for c in classes}
        if missing:
            raise DeployRefused(f"the source no longer defines {', '.join(sorted(missing))}")
        published = await self._publish_models(classes, None, record.source, restoring=wanted)
        return [f"{p.name} {p.version}" for p in published]

    def apply_restored_state(self, state: ModelState) -> str | None:
        """Give a restored model its recorded routes and published flag.

        Returns:
            A note when the recorded state could not be applied exactly (a routed
            version failed to restore), else ``None``.
        """
        entry = self.registry.find(state.name)
        if entry is None:
            return None  # no version restored: the failures are already reported
        entry.deploys = state.deploys
        routes = {v: w for v, w in state.routes.items() if v in entry.versions}
        note = None
        if routes != state.routes:
            fallback = entry.latest().version
            routes = routes or {fallback: 100.0}
            note = (
                f"{entry.name}: routes {state.routes} name versions that failed to restore; "
                f"serving {routes}"
            )
        entry.routes = routes
        entry.published = state.published
        if entry.published:
            self.ports.sync(entry)
        else:
            self.events.off_owner(("model", entry.name.lower()))
            self.ports.sync(entry)
        return note

    async def _columns(self, store: DataSource, table: str) -> set[str]:
        """The table's columns (remembered: this host is the table's only writer)."""
        known = self._table_columns.get((id(store), table))
        if known is None:
            known = self._table_columns[(id(store), table)] = set(await store.columns(table))
        return set(known)

    async def _ensure_table(self, store: DataSource, schema: TableSchema) -> None:
        """Create or grow the table, unless the last publish already made it so.

        A republish that changes no column (the usual hot redeploy) then costs no DDL:
        on DuckDB, DDL runs on the writer thread, and writes would wait for it.
        """
        key = (id(store), schema.name)
        if self._table_schemas.get(key) == schema:
            return
        await store.ensure_table(schema)
        self._table_schemas[key] = schema
        columns = self._table_columns.get(key)
        if columns is not None:
            columns.update(c.name for c in schema.columns)

    def _check_binding(self, cls: type[Model]) -> None:
        owner = getattr(cls.__microlib_runtime__, "host", None)
        if owner is not None and owner is not self and not owner.closed:
            raise DeployRefused(
                f"{cls.__name__} is already published to another host; define the class again "
                "to publish it here"
            )

    async def _check_evolution(
        self, mv: ModelVersion, store: DataSource, schema: TableSchema
    ) -> None:
        """Refuse a version the stored rows cannot satisfy (checked on the rows themselves).

        Only what changed is checked, so a republish of an unchanged model costs a
        metadata query, not a scan.
        """
        columns = await self._columns(store, schema.name)
        if not columns:
            return
        if not mv.spec.has_migrate:
            missing = [
                f.name for f in mv.spec.fields.values() if f.required and f.name not in columns
            ]
            total = await store.count(schema.name, {}) if missing else 0
            if total:
                raise DeployRefused(
                    f"{mv.name} {mv.version} adds required field {missing[0]!r} but {total} stored "
                    "row(s) have no value for it: give it a default or define migrate(record) "
                    "on the model",
                    field=missing[0],
                )
        else:
            return  # migrate() rewrites every row, and each is validated then
        entry = self.registry.find(mv.name)
        prev = entry.latest().cls if entry is not None and entry.versions else None
        records: list[dict[str, Any]] | None = None
        for col in schema.columns:
            if col.name in FRAMEWORK_FIELDS or col.name not in columns:
                continue
            info = mv.cls.model_fields[col.name]
            old = prev.model_fields.get(col.name) if prev is not None else None
            if old is not None and _field_type(old) == _field_type(info):
                continue
            if old is None and prev is None and store.sql_engine() is not None:
                continue  # first publish in this process: ensure_table checks the SQL types
            bad = await store.check_column_type(schema.name, col)
            if not bad:
                if records is None:
                    records = await store.records(schema.name)
                bad = _invalid_values(_annotated(info), col.name, records)
            if bad:
                raise DeployRefused(
                    f"{mv.name} {mv.version} changes field {col.name!r} in a way stored rows do "
                    f"not satisfy (ids {', '.join(bad[:5])}); keep the old type, add a new field "
                    "or define migrate(record)",
                    field=col.name,
                    ids=bad[:10],
                )

    async def _migrate(self, mv: ModelVersion, repo: Repository) -> None:
        migrate = mv.cls.migrate  # type: ignore[attr-defined]
        ops = []
        for record in await repo.store.records(repo.table):
            if record.get("version") == mv.version:
                # Migrated already, by an attempt whose deployment record was refused
                # (503, retried under the same version number): migrate once only.
                continue
            try:
                new = migrate(repo.codec.stored_values(dict(record)))
                if inspect.isawaitable(new):
                    new = await new
                values = {k: v for k, v in dict(new).items() if k in mv.cls.model_fields}
                values["revision"] = int(record.get("revision") or 0) + 1
                values["version"] = mv.version
                instance = mv.cls.model_validate(values)
            except (ValidationError, ValueError, TypeError, KeyError) as exc:
                raise DeployRefused(
                    f"{mv.name}.migrate failed on {record.get('id')}: {exc}", id=record.get("id")
                ) from None
            ops.append(WriteOp("upsert", repo.table, instance.id, repo.codec.encode(instance)))
        if ops:
            await repo.store.write_many(ops)
            self.cache.clear(repo.table)

    # -- versions and routes ---------------------------------------------------------------------

    def unpublish(self, name: str) -> None:
        """Remove a model's endpoints (its table and data stay; SQL still reads it)."""
        self.loop.run(self.unpublish_async(name))

    async def unpublish_async(self, name: str, *, who: str = "python") -> ModelEntry:
        """:meth:`unpublish` on the host loop; ``who`` goes to the deployment log."""
        async with self._deploying():
            entry = self.registry.get(name)
            if entry.published and _recorded(entry):
                await self._record(DeploymentRecord("unpublish", (entry.name,), (None,), who=who))
            entry = self.registry.unpublish(name)
            self.events.off_owner(("model", entry.name.lower()))
            self.ports.sync(entry)
            self._log("unpublish", [entry.name], [None], who)
        return entry

    def rollback(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Route everything to ``version`` (default: the version before the active one).

        Returns:
            The model's ``/config`` entry.
        """
        return self.loop.run(self.rollback_async(name, version))

    async def rollback_async(
        self, name: str, version: str | None = None, *, who: str = "python"
    ) -> dict[str, Any]:
        """:meth:`rollback` on the host loop; ``who`` goes to the deployment log."""
        async with self._deploying():
            entry = self.registry.get(name)
            before = (dict(entry.routes), entry.published)
            entry = self.registry.rollback(name, version)
            try:
                if _recorded(entry):
                    await self._record(
                        DeploymentRecord("rollback", (entry.name,), (entry.active,), who=who)
                    )
            except BaseException:
                entry.routes, entry.published = before  # not recorded, so not done
                raise
            self.ports.sync(entry)
            self._log("rollback", [entry.name], [entry.active], who)
            return self.config_entry(entry)

    def route(self, name: str, weights: Mapping[str, float]) -> dict[str, Any]:
        """Split traffic by weight, e.g. ``{"1.0.0": 90, "1.0.1": 10}`` (sticky per id)."""
        return self.loop.run(self.route_async(name, weights))

    async def route_async(
        self, name: str, weights: Mapping[str, float], *, who: str = "python"
    ) -> dict[str, Any]:
        """:meth:`route` on the host loop; ``who`` goes to the deployment log."""
        async with self._deploying():
            entry = self.registry.get(name)
            before = (dict(entry.routes), entry.published)
            entry = self.registry.route(name, weights)
            try:
                if _recorded(entry):
                    record = DeploymentRecord(
                        "route", (entry.name,), who=who, weights=dict(entry.routes)
                    )
                    await self._record(record)
            except BaseException:
                entry.routes, entry.published = before  # not recorded, so not done
                raise
            self.ports.sync(entry)
            self._log("route", [entry.name], list(entry.routes), who)
            return self.config_entry(entry)

    def model(self, name: str, version: str | None = None) -> type[Model]:
        """The class of a published model (its active version, or ``version``)."""
        entry = self.registry.get(name)
        if version is None:
            active = entry.active
            if active is None:
                raise NotFound(f"{entry.name} is not published")
            version = active
        return entry.get(version).cls

    # -- introspection --------------------------------------------------------------------------

    def config_entry(self, entry: ModelEntry) -> dict[str, Any]:
        """A model's ``/config`` entry."""
        from ..store.registry import redact_url  # a URL's password never leaves

        active = entry.versions.get(entry.active or "") or entry.latest()
        spec = active.spec
        return {
            "name": entry.name,
            "endpoint": entry.endpoint,
            "active": entry.active,
            "published": entry.published,
            "versions": list(entry.versions),
            "routes": dict(entry.routes),
            "deploys": entry.deploys,
            "schema": spec.schema,
            "fields": {n: f.to_json() for n, f in spec.fields.items()},
            "ports": {
                n: {**p.to_json(), **self.ports.status(entry.name, n)}
                for n, p in spec.ports.items()
            },
            "relations": {n: r.to_json() for n, r in spec.relations.items()},
            "commands": {n: c.to_json() for n, c in spec.commands.items()},
            "datasource": redact_url(self.datasource_for(spec.datasource)),
        }

    def config(self) -> dict[str, Any]:
        """``{"models": [...]}``: every published model (what ``GET /config`` answers)."""
        return {"models": [self.config_entry(e) for e in self.registry.entries()]}

    # -- events and SQL ---------------------------------------------------------------------------

    async def publish_event(self, event: Event) -> Event:
        """Publish an event on the broker (on the host loop)."""
        return self.events.publish(event)

    async def idle(self, timeout: float | None = 10.0) -> None:
        """Wait until event handlers (and the port flows they run) have finished."""
        await self.loop.call(self._settle, timeout)

    async def _settle(self, timeout: float | None) -> None:
        # Handlers start port flows and flows emit events: wait until both are quiet.
        async with asyncio.timeout(timeout):
            while True:
                await self.events.settle(None)
                await self.ports.settle()
                if not self.events.busy and not self.ports.busy:
                    return

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
        if self.loop.in_loop() or not self._sql.mirrors:
            # Every table lives in the engine's own database: no mirror to refresh, so
            # the query runs right here (DuckDB gives each thread its own cursor).
            return self._sql.execute(query, params, timeout=timeout)
        return self.loop.run(self.sql_async(query, params, timeout=timeout))

    async def sql_async(
        self, query: str, params: Any = None, *, timeout: float | None = None, capped: bool = False
    ) -> SqlResult:
        """:meth:`sql` from the host loop (runs the query on a worker thread).

        ``capped`` refuses answers over ``sql_max_rows`` (answers sent over HTTP).
        """
        await self._sql.refresh(self._sql_tables())
        return await asyncio.to_thread(
            functools.partial(self._sql.execute, query, params, timeout=timeout, capped=capped)
        )

    def _sql_tables(self) -> list[tuple[TableSchema, DataSource]]:
        tables = []
        for entry in self.registry.entries(published_only=False):
            repo = self._repos.get(entry.endpoint)
            if repo is not None:
                tables.append((table_schema(entry.latest()), repo.store))
        return tables

    # -- HTTP ----------------------------------------------------------------------------------

    @property
    def deploy_token(self) -> str:
        """The token the deploy routes require: ``MICROLIB_DEPLOY_TOKEN``, else the one in
        ``.microlib/deploy-token`` (created with mode 0600 when missing)."""
        if self._deploy_token is None:
            self._deploy_token = load_or_create_token(
                self.settings.home_path, self.settings.deploy_token
            )
        return self._deploy_token

    def serve(self, port: int | None = None, bind: str | None = None) -> str:
        """Serve the HTTP API from the host loop; returns the base URL (also ``host.url``).

        Args:
            port: TCP port (0 picks a free one; default: settings, 8707).
            bind: address (default: settings, 127.0.0.1).

        Raises:
            MicrolibError: the port is busy (the message says which).
        """
        from ..http.server import start_server

        if self.server is not None:
            return self.url  # type: ignore[return-value]
        port = self.settings.port if port is None else port
        bind = bind or self.settings.bind
        _ = self.deploy_token  # written before the first request can need it
        self.server, self.url = self.loop.run(start_server(self, port, bind))
        return self.url

    def stop_serving(self) -> None:
        """Stop the HTTP server and free its port (idempotent)."""
        if self.server is None:
            return
        from ..http.server import stop_server

        server, self.server, self.url = self.server, None, None
        self.loop.run(stop_server(server))

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop serving, flush and close every datasource, stop the loop (idempotent)."""
        if self._closed:
            return
        # Stop running SQL first: a runaway query would otherwise hold its request (and
        # the server's graceful stop) up, then keep its connection busy.
        self._sql.interrupt()
        try:
            self.stop_serving()
        except Exception:
            log.exception("stopping the HTTP server failed")
        try:
            self.loop.run(self._close_async(), timeout=60)
        except Exception:
            log.exception("closing the host failed")
        finally:
            self._closed = True
            self.loop.stop()

    async def _close_async(self) -> None:
        try:
            await self._settle(timeout=5)
        except TimeoutError:
            log.warning("event handlers still running at close")
        await self.ports.close()
        if self.cluster is not None:
            await self.cluster.close()
        for remote in self.remotes.values():
            await remote.close()
        self._sql.close()
        if self.deployment_log is not None:
            self.deployment_log.close()
        for store in self._datasources.values():
            try:
                await store.close()
            except Exception:
                log.exception("closing %s failed", store.describe())
        try:
            # The loop's worker threads (sources run at publish, sync commands, SQL)
            # end with the host, not at interpreter exit.
            await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), 10)
        except TimeoutError:
            log.warning("worker threads still busy at close")

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else (self.url or "not serving")
        return f"<Host {self.datasource.describe()} {state}>"

    def describe(self) -> str:
        """One line: where data lives and where the API is."""
        return f"datasource {self.datasource.describe()}; API {self.api_url or 'not serving'}"

    @property
    def api_url(self) -> str | None:
        """The API base URL (``url`` + ``api_root``) once serving."""
        return f"{self.url}{self.settings.api_root}" if self.url else None


def _unlock_if_taken(locking: asyncio.Future[None], log_: DeploymentLog) -> None:
    """Release a cluster deploy lock whose waiter was cancelled, once it was taken."""
    if not locking.cancelled() and locking.exception() is None:
        threading.Thread(target=log_.unlock, name="microlib-unlock", daemon=True).start()


def column_defaults(entry: ModelEntry | None, mv: ModelVersion) -> dict[str, Any]:
    """Non-null field defaults of every kept version of a model (the newest wins)."""
    versions = [*(entry.versions.values() if entry is not None else ()), mv]
    out: dict[str, Any] = {}
    for version in versions:
        for name, f in version.spec.fields.items():
            if f.has_default and f.default is not None:
                out[name] = f.default
            else:
                out.pop(name, None)
    return out


def _recorded(entry: ModelEntry) -> bool:
    """Whether a change of ``entry``'s routes goes to the deployment log.

    Versions published as Python classes (``host.publish(Order)``, a ``%%microlib
    model`` cell in the in-kernel host) have no source to restore from, so a change
    routing traffic to one of them is not recorded: a restarted host could not honour it.
    """
    return all(entry.versions[v].source is not None for v in entry.routes if v in entry.versions)


def _run_service(source: str, name: str) -> Any:
    return service_object(source, run_source(source, kind="service", name=name), name)


def with_class_line(exc: DeployRefused, source: str, classes: list[type[Model]]) -> DeployRefused:
    """``exc`` with the ``line`` of the source's class it names (if it names one).

    Refusals found after the source ran (a schema change the stored rows do not fit,
    an endpoint taken) name the model; the line of its ``class`` statement tells the
    author where to look, as for errors raised while the source runs.
    """
    if "line" in exc.details:
        return exc
    lines = class_lines(source)
    for cls in classes:
        if re.search(rf"\b{re.escape(cls.__name__)}\b", exc.message) and cls.__name__ in lines:
            return DeployRefused(exc.message, **exc.details, line=lines[cls.__name__])
    return exc


def class_lines(source: str) -> dict[str, int]:
    """Top-level class name -> the line of its ``class`` statement."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    return {n.name: n.lineno for n in tree.body if isinstance(n, ast.ClassDef)}


def _is_model_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Model)


def _field_type(info: Any) -> str:
    """A field's type with its constraints (``Field(gt=0)`` lands in ``metadata``)."""
    return repr((info.annotation, info.metadata))


def _annotated(info: Any) -> Any:
    """The annotation a stored value must validate as, constraints included."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _invalid_values(annotation: Any, name: str, records: list[dict[str, Any]]) -> list[str]:
    """Ids of records whose value of ``name`` does not validate as ``annotation``."""
    from pydantic import TypeAdapter

    ta = TypeAdapter(annotation)
    bad = []
    for rec in records:
        value = rec.get(name)
        if value is None:
            continue
        try:
            ta.validate_python(value)
        except ValidationError:
            bad.append(str(rec.get("id")))
            if len(bad) >= 10:
                break
    return bad


__all__ = ["Host", "MicrolibError", "Published"]
