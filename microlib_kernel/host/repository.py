"""The repository of one model's table: the one place every read and write goes through.

It owns the cache in front of the datasource, serialises writes per instance (so
concurrent updates never lose each other), checks revisions (optimistic concurrency),
runs the ``on_update``/``on_delete`` hooks, validates with the serving version's class,
emits the lifecycle events once a write is acknowledged, and tells change listeners
(the hook for cache coherence across processes).

Runs on the host loop only (see ``host/loop.py``).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import copy
import datetime as dt
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..domain.events import Event, EventBroker
from ..domain.ids import check_id, is_valid_id, new_id, new_ids
from ..domain.model import FRAMEWORK_FIELDS, Model
from ..domain.query import Query
from ..errors import Conflict, NotFound, ValidationFailed, Vetoed
from ..gc_pause import paused_gc
from ..store.base import DataSource, FreshInserts, Repeated, WriteOp
from ..store.cache import InstanceCache
from .bulk import (
    share_fields_set,
    share_fields_sets,
    validate_fresh,
    validate_json_array,
    validate_json_rows,
    validate_many,
)
from .records import dump_columns, dump_records

if TYPE_CHECKING:
    from .registry import ModelVersion

log = logging.getLogger("microlib_kernel.repository")

_FRAMEWORK = frozenset(FRAMEWORK_FIELDS)


@dataclass(frozen=True)
class Change:
    """A committed write: ``record`` is ``None`` for a delete."""

    table: str
    id: str
    record: dict[str, Any] | None


class RecordCodec:
    """Turns instances into stored records and back (the seam for encrypted fields)."""

    def encode(self, instance: Model) -> dict[str, Any]:
        """The record to store (JSON-able)."""
        return instance.model_dump(mode="json")

    def decode(self, cls: type[Model], record: dict[str, Any]) -> dict[str, Any]:
        """The values to validate ``cls`` from."""
        return record

    def stored_values(self, record: dict[str, Any]) -> dict[str, Any]:
        """A stored record as a model's ``migrate(record)`` sees it (encrypted values opened)."""
        return record

    def plain(self, cls: type[Model]) -> bool:
        """Whether ``cls``'s records are stored as ``model_dump(mode="json")`` gives them
        (then bulk paths may skip :meth:`encode` and :meth:`decode`)."""
        return True


def _framework_values(mv: ModelVersion, now: dt.datetime) -> dict[str, Any]:
    """The framework fields of a new instance of ``mv`` made at ``now`` (all but its id)."""
    return {
        "created_at": now,
        "updated_at": now,
        "version": mv.version,
        "revision": 1,
        "port_flow": [],
        "compensation": None,
    }


def validation_failed(
    exc: ValidationError, what: str, secret: Sequence[str] = ()
) -> ValidationFailed:
    """A :class:`ValidationFailed` carrying pydantic's details as JSON.

    The input of a ``secret`` field is masked: an error must not echo a secret.
    """
    errors = json.loads(exc.json(include_url=False))
    if secret:
        _mask_inputs(errors, set(secret))
    first = errors[0] if errors else {}
    loc = ".".join(str(p) for p in first.get("loc", ())) or what
    return ValidationFailed(
        f"{what} is invalid: {loc}: {first.get('msg', 'invalid')}"
        + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
        errors=errors,
    )


def _mask_inputs(errors: list[dict[str, Any]], secret: set[str]) -> None:
    for error in errors:
        loc = error.get("loc") or []
        if loc and loc[0] in secret:
            error["input"] = "***"
        elif not loc and isinstance(error.get("input"), dict):
            error["input"] = {
                k: "***" if k in secret and v is not None else v for k, v in error["input"].items()
            }


class _Locks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, list[Any]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Repository:
    """Reads and writes of one table, shared by every version of its model.

    Args:
        table: the table (the model's endpoint).
        model: the model's class name (events carry it).
        store: the datasource holding the table.
        cache: the host's instance cache.
        events: the host's broker.
        on_change: called with every committed :class:`Change`.
    """

    #: Whether an instance of this table was ever cached (only :meth:`_keep` caches
    #: them). Until then a list skips the cache lookups. A class default, not set in
    #: ``__init__``: it starts ``False`` for every repository.
    _cached_any = False

    def __init__(
        self,
        table: str,
        model: str,
        store: DataSource,
        cache: InstanceCache,
        events: EventBroker,
        listeners: Sequence[Callable[[Change], None]] = (),
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.table = table
        #: The UTC clock of ``created_at``/``updated_at`` (the host's; tests inject one).
        self.now = now
        self.model = model
        self.store = store
        self.cache = cache
        self.events = events
        self.codec = RecordCodec()
        #: Column -> default (JSON) of fields some published version declares. A create
        #: by a version without the field stores the default, not NULL: while routes
        #: split traffic, or during a publish that adds a column, an older version's
        #: rows must read back in the newer version as the default, like the rows the
        #: column was added to.
        self.defaults: dict[str, Any] = {}
        #: Called with a :class:`Change` after every committed write. The owner's list
        #: itself, not a copy: listeners added later are called too.
        self._listeners = listeners
        self._locks = _Locks()
        #: Bumped when another process changed a row (cached lists are then stale).
        self.generation = 0

    @property
    def prefix(self) -> str:
        return self.model.lower()

    # -- records <-> instances -----------------------------------------------------------

    def materialize(self, mv: ModelVersion, record: dict[str, Any]) -> Model:
        """Validate a stored record into ``mv``'s class (never fails: see below)."""
        cls = mv.cls
        values = self.codec.decode(cls, record)
        data = {k: v for k, v in values.items() if k in cls.model_fields}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            # Stored data that the serving version rejects is still returned, never
            # dropped: reads must not lose data because a validator got stricter.
            log.warning(
                "%s/%s does not validate as %s %s: %s",
                self.table,
                record.get("id"),
                mv.name,
                mv.version,
                exc.errors(include_url=False)[:1],
            )
            return cls.model_construct(**data)

    def _convert(self, mv: ModelVersion, instance: Model) -> Model:
        if type(instance) is mv.cls:
            return instance
        converted = self.materialize(mv, self.codec.encode(instance))
        self._keep(converted)
        return converted

    async def _load(self, mv: ModelVersion, id: str) -> Model | None:
        cached = self.cache.get(self.table, id)
        if cached is not None:
            return self._convert(mv, cached)
        record = await self.store.get(self.table, id)
        if record is None:
            return None
        instance = self.materialize(mv, record)
        self._keep(instance)
        return instance

    @contextlib.contextmanager
    def _evict_on_conflict(self, id: str) -> Iterator[None]:
        """A store shared with other processes refused a write as stale: our cached copy
        is out of date, so drop it and let the caller's retry read the stored row."""
        try:
            yield
        except Conflict:
            self.cache.evict(self.table, id)
            raise

    def _keep(self, instance: Model) -> None:
        """Cache ``instance`` (with its set of fields set shared: see ``bulk.py``)."""
        if self.cache.size:
            self._cached_any = True
            share_fields_set(instance)
            self.cache.put(self.table, instance.id, instance)

    def _encode_new(self, instance: Model) -> dict[str, Any]:
        """The record of a new instance, with the defaults of columns its version lacks."""
        record = self.codec.encode(instance)
        for name, value in self.defaults.items():
            if name not in record:
                record[name] = copy.deepcopy(value)
        return record

    def _emit(self, name: str, instance: Model, data: Callable[[], Any]) -> None:
        self.events.publish(
            Event(
                f"{self.prefix}.{name}", model=self.model, model_id=instance.id, data_factory=data
            )
        )

    def _changed(self, id: str, record: dict[str, Any] | None) -> None:
        if self._listeners:
            change = Change(self.table, id, record)
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("change listener failed for %s/%s", self.table, id)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, mv: ModelVersion, id: str) -> Model:
        """The instance with ``id``, as ``mv``'s class.

        Raises:
            NotFound: no such id (or an id that cannot exist).
        """
        if not is_valid_id(id):
            raise NotFound(f"no {self.model} with id {id!r}", id=str(id)[:200])
        cached = self.cache.get(self.table, id)
        if cached is not None:
            return self._convert(mv, cached)
        async with self._locks.hold(id):  # no stale read-through racing a write
            instance = await self._load(mv, id)
        if instance is None:
            raise NotFound(f"no {self.model} with id {id!r}", id=id)
        return instance

    async def list(self, mv: ModelVersion, query: Query) -> list[Model]:
        if self.codec.plain(mv.cls):
            # The fast path: the store renders rows as JSON, pydantic validates them all
            # in one call (README, "Bulk writes, lists and memory"). Rows of any other
            # shape, or a row the serving version rejects, take the path below.
            if not self._cached_any:
                # Nothing of this table was ever cached (a new host): no row can come
                # from the cache, so the store need not list ids first.
                listed = await self._list_json_array(mv, query)
                if listed is not None:
                    return listed
            hits: dict[str, Model] = {}

            def needed(pairs: builtins.list[tuple[str, int]]) -> builtins.list[str]:
                # Cached copies of the same revision (and class) are reused as they are.
                want = []
                cls = mv.cls
                copies = self.cache.get_many(self.table, [id for id, _ in pairs])
                for (id, revision), cached in zip(pairs, copies, strict=True):
                    if cached is not None and cached.revision == revision and type(cached) is cls:
                        hits[id] = cached
                    else:
                        want.append(id)
                return want

            fields = builtins.list(mv.cls.model_fields)
            rows = await self.store.query_json(self.table, query, fields, needed)
            if rows is not None:
                listed = self._from_json_rows(mv, rows, hits)
                if listed is not None:
                    return listed
        records = await self.store.query(self.table, query)
        out = []
        for rec in records:
            cached = self.cache.get(self.table, rec["id"])
            if cached is not None and cached.revision == rec.get("revision"):
                out.append(self._convert(mv, cached))
            else:
                out.append(self.materialize(mv, rec))
        return out

    async def _list_json_array(self, mv: ModelVersion, query: Query) -> builtins.list[Model] | None:
        """The instances of one JSON array the store renders (``None``: no such path,
        or a row the serving version rejects)."""
        fields = builtins.list(mv.cls.model_fields)
        batches = self.store.json_batches(self.table, query, fields)
        if batches is not None:
            # The store reads the next batch while this one is validated.
            listed: builtins.list[Model] = []
            async with contextlib.aclosing(batches):
                async for count, batch in batches:
                    instances = validate_json_array(mv.cls, batch, count)
                    if instances is None:
                        return None
                    listed.extend(instances)
            return listed
        got = await self.store.query_json_array(self.table, query, fields)
        if got is None:
            return None
        count, text = got
        return validate_json_array(mv.cls, text, count)

    def _from_json_rows(
        self,
        mv: ModelVersion,
        rows: builtins.list[tuple[str, int, str | None]],
        hits: dict[str, Model],
    ) -> builtins.list[Model] | None:
        """Instances of ``(id, revision, json)`` rows: the cached copies in ``hits``, the
        others validated at once (``None`` if one of them does not validate)."""
        out: builtins.list[Any] = [None] * len(rows)
        missing: builtins.list[int] = []
        for n, (id, _, text) in enumerate(rows):
            # One snapshot: a row's revision here is the one ``needed`` saw.
            if id in hits:
                out[n] = hits[id]
            elif text is None:
                return None  # not asked for, yet not cached: cannot happen; be safe
            else:
                missing.append(n)
        if missing:
            texts = [rows[n][2] or "" for n in missing]
            instances = validate_json_rows(mv.cls, texts)
            if instances is None:
                return None
            for n, instance in zip(missing, instances, strict=True):
                out[n] = instance
        return out

    async def count(self, filters: dict[str, Any]) -> int:
        return await self.store.count(self.table, filters)

    # -- writes ------------------------------------------------------------------------------

    def _values(
        self, mv: ModelVersion, data: dict[str, Any], id: str, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """What a new instance validates from: ``data`` and the framework fields."""
        if not isinstance(data, dict):
            raise ValidationFailed(
                f"{self.model} data must be an object, got {type(data).__name__}"
            )
        # isdisjoint first: no set is built for the usual row (create_many calls this
        # once per row).
        if not _FRAMEWORK.isdisjoint(data):
            framework = sorted(set(data) & _FRAMEWORK)
            raise ValidationFailed(
                f"{', '.join(framework)} {'is' if len(framework) == 1 else 'are'} set by the "
                "framework, not by the caller",
                errors=[
                    {"type": "framework_field", "loc": [f], "msg": "set by the framework"}
                    for f in framework
                ],
            )
        return {**data, "id": id, **_framework_values(mv, now or self.now())}

    def _new(self, mv: ModelVersion, data: dict[str, Any], id: str) -> Model:
        values = self._values(mv, data, id)
        try:
            return mv.cls.model_validate(values)
        except ValidationError as exc:
            raise validation_failed(exc, self.model, mv.spec.secret_fields) from None

    async def create(
        self,
        mv: ModelVersion,
        data: dict[str, Any],
        *,
        id: str | None = None,
        fresh: bool = False,
    ) -> tuple[Model, bool]:
        """Create an instance; with ``id`` (an idempotency key) a replay returns the first.

        Args:
            id: the new instance's id. It is an idempotency key: if an instance with
                this id exists, it is returned instead (a replay; ``data`` must still
                validate).
            fresh: ``id`` was just made with ``new_id()`` (the HTTP layer makes the id
                first to pick the version that serves it): skip the replay lookup.

        Returns:
            ``(instance, created)``; ``created`` is ``False`` for a replay.
        """
        if id is None or fresh:
            instance = self._new(mv, data, new_id() if id is None else check_id(id))
            await self._commit_new(instance)
            return instance, True
        check_id(id)
        # A replay must be a valid create too: data that could not create is refused
        # even when the key exists (the replay's answer would hide the mistake).
        self._new(mv, data, id)
        async with self._locks.hold(id):
            existing = await self._load(mv, id)
            if existing is not None:
                return existing, False
            instance = self._new(mv, data, id)
            await self._commit_new(instance)
            return instance, True

    async def _commit_new(self, instance: Model) -> None:
        record = self._encode_new(instance)
        await self.store.write(
            WriteOp("upsert", self.table, instance.id, record, expect_revision=0)
        )
        self._keep(instance)
        self._emit("created", instance, instance.to_json)
        self._changed(instance.id, record)

    async def create_batch(
        self, items: builtins.list[tuple[ModelVersion, dict[str, Any]]]
    ) -> builtins.list[Model | Exception]:
        """Create many independent instances at once (each succeeds or fails alone).

        This is what concurrent ``Model.create`` calls turn into: one task on the host
        loop and one bulk write instead of one of each per create.
        """
        outcomes = self._new_each(items)
        made = [(n, o) for n, o in enumerate(outcomes) if isinstance(o, Model)]
        if len({type(o) for _, o in made}) == 1:
            # One serving version (the usual case): encode them all in one call.
            records = self._fresh_inserts(items[made[0][0]][0], [o for _, o in made]).records
        else:
            records = [self._encode_new(o) for _, o in made]
        valid = [(n, o, r) for (n, o), r in zip(made, records, strict=True)]
        if not valid:
            return outcomes
        errors = await self.store.write_each(
            [WriteOp("upsert", self.table, i.id, r, expect_revision=0) for _, i, r in valid]
        )
        for (index, instance, record), error in zip(valid, errors, strict=True):
            if error is not None:
                outcomes[index] = error if isinstance(error, Exception) else RuntimeError(error)
                continue
            self._keep(instance)
            self._emit("created", instance, instance.to_json)
            self._changed(instance.id, record)
        return outcomes

    def _new_each(
        self, items: builtins.list[tuple[ModelVersion, dict[str, Any]]]
    ) -> builtins.list[Model | Exception]:
        """New instances of independent creates (an exception for each invalid one)."""
        outcomes: builtins.list[Any] = [None] * len(items)
        values: builtins.list[tuple[int, dict[str, Any]]] = []
        for n, (mv, data) in enumerate(items):
            try:
                values.append((n, self._values(mv, data, new_id())))
            except Exception as exc:
                outcomes[n] = exc
        if len(values) > 1 and len({id(items[n][0]) for n, _ in values}) == 1:
            mv = items[values[0][0]][0]
            try:
                instances = validate_many(mv.cls, [v for _, v in values])
            except ValidationError:
                pass  # some create is invalid: row by row below, for its own error
            else:
                for (n, _), instance in zip(values, instances, strict=True):
                    outcomes[n] = instance
                return outcomes
        for n, value in values:
            mv, data = items[n]
            try:
                outcomes[n] = self._new(mv, data, value["id"])
            except Exception as exc:
                outcomes[n] = exc
        return outcomes

    def _checked_rows(
        self, mv: ModelVersion, rows: Sequence[dict[str, Any]], ids: Sequence[str]
    ) -> None:
        """Refuse the first row that is not a dict or sets a framework field, as a
        create would (the checks are made once per call when every row passes)."""
        if set(map(type, rows)) - {dict} or not all(map(_FRAMEWORK.isdisjoint, rows)):
            for row, id in zip(rows, ids, strict=True):
                self._values(mv, row, id)

    async def create_many(
        self, mv: ModelVersion, rows: Sequence[dict[str, Any]]
    ) -> builtins.list[Model]:
        """Validate every row first (all or nothing), then write them in bulk.

        The rows of one call are created at the same instant (one ``created_at``): they
        commit in one transaction.
        """
        now = self.now()
        # The collector stays off for the whole burst, not only inside pydantic: the
        # per-row dicts, ids and write records would trigger young collections that
        # free nothing (gc_pause.py).
        with paused_gc(len(rows)):
            ids = new_ids(len(rows))
            self._checked_rows(mv, rows, ids)
            try:
                instances, known = validate_fresh(mv.cls, rows, ids, _framework_values(mv, now))
            except ValidationError:
                # Row by row, for the first invalid row's error exactly as a create gives.
                instances = [self._new(mv, row, id) for row, id in zip(rows, ids, strict=True)]
                known = {}
            ops = self._fresh_inserts(mv, instances, known, by_column=True)
        await self.store.write_many(ops)
        with paused_gc(len(rows)):
            if self.cache.size:
                self._cached_any = True
                share_fields_sets(instances)
                self.cache.put_many(self.table, [(i.id, i) for i in instances])
            name, model = f"{self.prefix}.created", self.model
            self.events.publish_each(
                name,
                len(instances),
                lambda k: Event(
                    name,
                    model=model,
                    model_id=instances[k].id,
                    data_factory=instances[k].to_json,
                    time=now,
                ),
            )
            if self._listeners:
                for instance, record in zip(instances, ops.records, strict=True):
                    self._changed(instance.id, record)
        return instances

    def _fresh_inserts(
        self,
        mv: ModelVersion,
        instances: builtins.list[Model],
        known: dict[str, Sequence[Any]] | None = None,
        by_column: bool = False,
    ) -> FreshInserts:
        """The writes of new instances: :meth:`_encode_new` of each, in bulk when plain;
        ``by_column``, as columns (``known`` ones taken as the instances' values) when
        the store reads them and no listener needs the records."""
        if not self.codec.plain(mv.cls):
            ids = [i.id for i in instances]
            return FreshInserts(self.table, ids, [self._encode_new(i) for i in instances])
        count = len(instances)
        if by_column and self.store.reads_columns and not self._listeners:
            columns = dump_columns(mv.cls, instances, known)
            if columns is not None:
                for name, value in self.defaults.items():
                    if name not in columns:  # a column of another version: its default
                        columns[name] = (
                            Repeated(value, count)
                            if type(value) in (str, int, float, bool)
                            else [copy.deepcopy(value) for _ in range(count)]
                        )
                return FreshInserts.of_columns(self.table, columns)
        records = dump_records(mv.cls, instances)
        if self.defaults:
            for record in records:
                for name, value in self.defaults.items():
                    if name not in record:
                        record[name] = copy.deepcopy(value)
        return FreshInserts(self.table, [i.id for i in instances], records)

    async def update(
        self,
        mv: ModelVersion,
        id: str,
        changes: dict[str, Any],
        *,
        expect_revision: int | None = None,
        hooks: bool = True,
        framework: bool = False,
    ) -> Model:
        """Validate and apply ``changes`` to the current state of ``id``.

        Args:
            expect_revision: refuse with :class:`Conflict` unless the stored revision is this.
            hooks: run ``on_update``.
            framework: allow framework fields (``port_flow``, ``compensation``).

        Raises:
            NotFound, ValidationFailed, Conflict.
        """
        if not isinstance(changes, dict):
            raise ValidationFailed(f"changes must be an object, got {type(changes).__name__}")
        async with self._locks.hold(id):
            current = await self._load(mv, id) if is_valid_id(id) else None
            if current is None:
                raise NotFound(f"no {self.model} with id {id!r}", id=str(id)[:200])
            if expect_revision is not None and current.revision != expect_revision:
                raise Conflict(
                    f"{self.model} {id} changed since this copy was read (revision "
                    f"{expect_revision}, now {current.revision}); read it again "
                    f"(await {self.model}.find({id!r})) and retry",
                    id=id,
                    revision=current.revision,
                )
            changes = self._check_changes(mv, current, changes, framework)
            # The hook sees the user's changes only; framework fields (a port's
            # port_flow) are not the hook's to drop or alter.
            own = {k: v for k, v in changes.items() if k not in FRAMEWORK_FIELDS}
            if hooks and own and "on_update" in mv.spec.hooks:
                proposed = self._validate(mv, current, changes)
                valid = {k: getattr(proposed, k) for k in own}
                try:
                    result = await _maybe_await(current.on_update(valid))
                except ValueError as exc:
                    raise ValidationFailed(f"{self.model}.on_update refused: {exc}") from None
                if not isinstance(result, dict):
                    raise ValidationFailed(
                        f"{self.model}.on_update must return a dict of changes, got "
                        f"{type(result).__name__}"
                    )
                kept = {k: v for k, v in changes.items() if k in FRAMEWORK_FIELDS}
                changes = {**self._check_changes(mv, current, result, framework), **kept}
            updated = self._validate(mv, current, changes, bump=True)
            record = self.codec.encode(updated)
            with self._evict_on_conflict(id):
                await self.store.write(
                    WriteOp("upsert", self.table, id, record, expect_revision=current.revision)
                )
            self._keep(updated)
        names = list(changes)
        self._emit(
            "updated",
            updated,
            lambda: {
                "changes": {k: v for k, v in updated.to_json().items() if k in names},
                "model": updated.to_json(),
            },
        )
        self._changed(id, record)
        return updated

    def _check_changes(
        self, mv: ModelVersion, current: Model, changes: dict[str, Any], framework: bool
    ) -> dict[str, Any]:
        protected = set(FRAMEWORK_FIELDS) - ({"port_flow", "compensation"} if framework else set())
        bad = sorted(set(changes) & protected)
        if bad:
            raise ValidationFailed(
                f"{', '.join(bad)} cannot be changed: set by the framework",
                errors=[
                    {"type": "framework_field", "loc": [f], "msg": "set by the framework"}
                    for f in bad
                ],
            )
        frozen = [
            k
            for k, v in changes.items()
            if (f := mv.spec.fields.get(k)) is not None and f.frozen and v != getattr(current, k)
        ]
        if frozen:
            raise ValidationFailed(
                f"{', '.join(frozen)} cannot change after create (Field(frozen=True))",
                errors=[{"type": "frozen_field", "loc": [f], "msg": "frozen"} for f in frozen],
            )
        return changes

    def _validate(
        self, mv: ModelVersion, current: Model, changes: dict[str, Any], bump: bool = False
    ) -> Model:
        values = {k: getattr(current, k) for k in mv.cls.model_fields}
        values.update(changes)
        if bump:
            values["revision"] = current.revision + 1
            values["updated_at"] = self.now()
            values["version"] = mv.version
        try:
            return mv.cls.model_validate(values)
        except ValidationError as exc:
            raise validation_failed(exc, f"{self.model} update", mv.spec.secret_fields) from None

    async def delete(self, mv: ModelVersion, id: str) -> Model:
        """Delete ``id`` (``on_delete`` may veto); returns the deleted state.

        Raises:
            NotFound, Vetoed.
        """
        async with self._locks.hold(id):
            current = await self._load(mv, id) if is_valid_id(id) else None
            if current is None:
                raise NotFound(f"no {self.model} with id {id!r}", id=str(id)[:200])
            if "on_delete" in mv.spec.hooks:
                try:
                    hook: Callable[[], Any] = current.on_delete
                    await _maybe_await(hook())
                except (ValueError, Vetoed) as exc:
                    raise Vetoed(f"{self.model} {id} was not deleted: {exc}", id=id) from None
            with self._evict_on_conflict(id):
                await self.store.write(
                    WriteOp("delete", self.table, id, expect_revision=current.revision)
                )
            self.cache.evict(self.table, id)
        self._emit("deleted", current, current.to_json)
        self._changed(id, None)
        return current

    async def reseal(self, id: str, transform: Callable[[dict[str, Any]], Any]) -> bool:
        """Rewrite how ``id`` is stored, not what it holds (a key rotation re-encrypting).

        ``transform(record)`` returns the new record, or ``None`` to leave it. Runs under
        the id's lock, so no write is lost; the revision, the cache and the events stay
        as they are (the instance's values do not change). Returns whether it wrote.
        """
        async with self._locks.hold(id):
            record = await self.store.get(self.table, id)
            if record is None:
                return False
            new = transform(dict(record))
            if new is None:
                return False
            await self.store.write(
                WriteOp("upsert", self.table, id, new, expect_revision=record.get("revision"))
            )
        self._changed(id, new)
        return True

    def forget(self, id: str) -> None:
        """Drop a cached copy (another process changed it)."""
        self.cache.evict(self.table, id)
        self.generation += 1
