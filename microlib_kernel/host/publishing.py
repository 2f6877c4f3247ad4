"""The publish pipeline: run a source, check its models, evolve their tables, swap them in.

A publish of one or more models is all or nothing. Everything is checked before
anything changes: endpoints, commands, secrets and relations, then each stored table
against the new version (required fields added, field types changed: checked on the
rows themselves). Then the tables are created or grown (DDL), ``migrate()`` runs, the
deployment is recorded (by the caller's recorder: durable before it serves), and the
versions are added to the registry. Adapters, services and modules run their source
and bind it. The :class:`~microlib_kernel.host.rollout.Rollout` calls this under its
deploy lock; a restore calls it with the recorded version numbers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import ValidationError

from ..domain.model import FRAMEWORK_FIELDS, Model
from ..errors import DeployRefused
from ..store.base import DataSource, TableSchema, WriteOp
from ..store.deployments import DeploymentRecord
from .adapters import adapter_functions
from .deploy import (
    KINDS,
    Published,
    install_module,
    installed_module,
    models_defined,
    reinstall_module,
    run_source,
    service_object,
)
from .registry import ModelEntry, ModelVersion
from .runtime import ModelServices, VersionRuntime
from .tables import table_schema

if TYPE_CHECKING:
    from .context import HostContext
    from .queries import SqlQueries
    from .repository import Repository
    from .secret_keeper import SecretKeeper

log = logging.getLogger("microlib_kernel.host")

#: Appends a deployment record before the change is acknowledged (raises if refused).
Recorder = Callable[[DeploymentRecord], Awaitable[None]]


class PublishPipeline:
    """Publishes models, adapters, services and modules on one host (module docstring).

    Args:
        ctx: the host's context.
        services: the commands, ports, relations and SQL each published version gets
            (and whose publish-time checks run here).
        secrets: the secret keeper (its checks and each table's codec).
        queries: the SQL service (a table on a new store may need a mirror).
    """

    def __init__(
        self,
        ctx: HostContext,
        services: ModelServices,
        secrets: SecretKeeper,
        queries: SqlQueries,
    ) -> None:
        self.ctx = ctx
        self.services = services
        self.secrets = secrets
        self.queries = queries
        self._table_schemas: dict[tuple[int, str], TableSchema] = {}
        self._table_columns: dict[tuple[int, str], set[str]] = {}
        # The last source of each adapter, service and module (kind, name) -> text: a
        # starting host skips a notebook's unchanged sources (see unchanged).
        self._sources: dict[tuple[str, str], str] = {}

    def unchanged(
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
        for entry in self.ctx.registry.entries():
            for mv in entry.versions.values():
                serving = mv is entry.latest() or mv.version in entry.routes
                if mv.source == obj and serving and version in (None, mv.version):
                    out.append(Published(mv.name, mv.version, mv.spec.endpoint))
                    break
        return out or None

    async def publish(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str,
        name: str | None,
        version: str | None,
        who: str,
        record: Recorder,
    ) -> list[Published]:
        """Publish ``obj`` (see :meth:`Host.publish`); ``record`` makes it durable first."""
        if kind not in KINDS:
            raise DeployRefused(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(obj, type) and issubclass(obj, Model):
            return await self.publish_models([obj], version, None, record=record)
        if isinstance(obj, list | tuple) and obj and all(_is_model_class(c) for c in obj):
            return await self.publish_models(list(obj), version, None, record=record)
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
                return await self.publish_models(classes, version, obj, who=who, record=record)
            except DeployRefused as exc:
                raise with_class_line(exc, obj, classes) from None
        assert name is not None
        await self.install_source(
            obj, kind, name, DeploymentRecord(kind, (name,), (None,), who=who, source=obj), record
        )
        return [Published(name, None, None)]

    async def install_source(
        self,
        source: str,
        kind: str,
        name: str,
        entry: DeploymentRecord | None,
        record: Recorder | None,
    ) -> None:
        """Run an adapter, service or module source, record ``entry`` (unless restoring),
        bind it."""
        if kind == "adapter":
            module = await asyncio.to_thread(run_source, source, kind="adapter", name=name)
            if not adapter_functions(vars(module), module.__name__):
                raise DeployRefused(f"adapter source {name} defines no function")
            if entry is not None and record is not None:
                await record(entry)
            self.ctx.adapters.register_module(name, vars(module), module.__name__)
        elif kind == "service":
            service = await asyncio.to_thread(run_service, source, name)
            if entry is not None and record is not None:
                await record(entry)
            self.ctx.services.register(name, service)
        else:
            previous = installed_module(name)
            await asyncio.to_thread(install_module, name, source)
            if entry is not None and record is not None:
                try:
                    await record(entry)
                except BaseException:
                    reinstall_module(name, previous)  # not recorded, so not done
                    raise
        self._sources[(kind, name)] = source

    async def publish_models(
        self,
        classes: list[type[Model]],
        version: str | None,
        source: str | None,
        *,
        who: str = "python",
        record: Recorder | None = None,
        restoring: Mapping[str, str] | None = None,
    ) -> list[Published]:
        """Check, prepare, record and swap in new versions of ``classes`` (all or none).

        Args:
            record: appends the deployment record (a source's publish is recorded
                before it serves; ``None``: nothing is recorded).
            restoring: lower-case name -> recorded version, when a starting host
                re-creates versions from its log: the recorded numbers are used, stored
                rows are neither re-checked nor migrated again, and nothing is recorded.
        """
        # Everything is checked before anything is swapped in: all models or none.
        now = self.ctx.clock.now()
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
                self.ctx.registry.check_endpoint(spec.name, spec.endpoint)
            number = (
                restoring[spec.name.lower()]
                if restoring is not None
                else self.ctx.registry.next_version(spec.name, version)
            )
            mv = ModelVersion(spec.name, number, cls, spec, now, source)
            planned.append(mv)
        self.services.commands.check(planned)
        self.secrets.check(planned)
        self.services.relations.check(planned)
        prepared = []
        for mv in planned:
            store = await self.ctx.repositories.open(
                self.ctx.repositories.datasource_for(mv.spec.datasource)
            )
            schema = table_schema(mv)
            if restoring is None:
                await self._check_evolution(mv, store, schema)
            await self.secrets.check_stored(mv, store)
            prepared.append((mv, store, schema))
        for mv, store, schema in prepared:
            await self._ensure_table(store, schema)
            repo = self.ctx.repositories.bind(schema.name, mv.name, store)
            repo.codec = self.secrets.codec(schema.name)
            repo.model = mv.name
            repo.defaults = column_defaults(self.ctx.registry.find(mv.name), mv)
            if mv.spec.has_migrate and restoring is None:
                await self._migrate(mv, repo)
        if source is not None and restoring is None and record is not None:
            # Durable before it serves: a version that is live was recorded.
            await record(
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
            self.queries.note_store(store)
        for mv, _, _ in prepared:
            mv.runtime = VersionRuntime(self.ctx, mv, self.services)
            mv.cls.__microlib_runtime__ = mv.runtime
            entry = self.ctx.registry.add(mv)
            if restoring is None:
                self.services.ports.sync(entry)  # a restore syncs once, with the final routes
            out.append(Published(mv.name, mv.version, mv.spec.endpoint))
            log.info("published %s %s at %s", mv.name, mv.version, mv.spec.endpoint)
        return out

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
            await self.install_source(record.source, record.kind, name, None, None)
            return [f"{record.kind} {name}"]
        module = await asyncio.to_thread(run_source, record.source, kind="model", name=None)
        classes = [c for c in models_defined(module) if c.__name__.lower() in wanted]
        missing = set(wanted) - {c.__name__.lower() for c in classes}
        if missing:
            raise DeployRefused(f"the source no longer defines {', '.join(sorted(missing))}")
        published = await self.publish_models(classes, None, record.source, restoring=wanted)
        return [f"{p.name} {p.version}" for p in published]

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
        owner = getattr(cls.__microlib_runtime__, "ctx", None)
        if owner is not None and owner is not self.ctx and not owner.state.closed:
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
        entry = self.ctx.registry.find(mv.name)
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
            self.ctx.cache.clear(repo.table)


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


def run_service(source: str, name: str) -> Any:
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
