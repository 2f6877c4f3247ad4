"""Relations between published models, resolved through each target's own datasource.

* ``await resolve(mv, instance, name, create)`` -- ``await order.customer()``; with
  dicts in ``create``, creates related instances and links them. Returns a ``Model``,
  ``None`` or a list of models.
* ``await lookup(mv, instance, name) -> RelationResult`` -- for HTTP: ``value`` (model,
  list or None) and ``reason`` (None, or why the value is empty: target not published,
  related instance missing). An unknown relation raises ``NotFound``.

Kinds (``domain/relations.py``):

* ``many_to_one``: this instance's ``foreign_key`` holds the target's id.
* ``one_to_one``: the same when ``foreign_key`` is a field of this model; otherwise the
  target holds it (= this id): the reverse side.
* ``one_to_many``: the targets whose ``foreign_key`` is this id (creation order).
* ``contains_many``: ``foreign_key`` is a list of target ids, or, with ``array_key``,
  each item of that list holds a target id in ``foreign_key`` (order items ->
  products). Distinct targets, in the order they first appear.

The target's version is picked by the registry like any request (sticky per id), and
read through the target's repository: its cache, its datasource, whichever it is. A
target no local version serves but another host does (``remote_models``) is read over
that host's API (:mod:`.remote`). A missing target never raises: ``None`` / ``[]`` and a
reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..domain.ids import is_valid_id
from ..domain.query import build_query
from ..errors import BadQuery, Conflict, DeployRefused, NotFound, ValidationFailed

if TYPE_CHECKING:
    from ..domain.model import Model
    from ..domain.relations import RelationSpec
    from .context import HostContext
    from .registry import ModelVersion
    from .remote import RemoteModel
    from .repository import Repository

log = logging.getLogger("microlib_kernel.relations")


@dataclass(frozen=True)
class RelationResult:
    """A resolved relation: the related model(s), and why it is empty when it is.

    Attributes:
        value: a model, a list of models, or ``None``.
        reason: ``None``, or one sentence saying why ``value`` is empty or partial.
        many: whether the relation yields a list (``one_to_many``, ``contains_many``).
    """

    value: Any
    reason: str | None = None
    many: bool = False


class LocalTarget:
    """A target model this host serves: read through its repository."""

    def __init__(self, mv: ModelVersion, repo: Repository) -> None:
        self.mv = mv
        self.repo = repo

    async def get(self, id: str) -> Any:
        if not is_valid_id(id):
            return None
        try:
            return await self.repo.get(self.mv, id)
        except NotFound:
            return None

    async def has_field(self, name: str) -> bool:
        return name in self.mv.spec.fields

    async def find(self, field: str, value: str, limit: int | None) -> list[Any]:
        """Raises ``BadQuery`` for a value the field cannot hold."""
        return await self.repo.list(self.mv, build_query(self.mv.cls, {field: value}, limit=limit))


class RemoteTarget:
    """A target model another host serves (``remote_models``): read over its API."""

    def __init__(self, remote: RemoteModel) -> None:
        self.remote = remote

    async def get(self, id: str) -> Any:
        if not is_valid_id(id):
            return None
        try:
            return await self.remote.get(id)
        except NotFound:
            return None

    async def has_field(self, name: str) -> bool:
        return await self.remote.has_field(name)

    async def find(self, field: str, value: str, limit: int | None) -> list[Any]:
        return await self.remote.find(limit=limit, **{field: value})


Target = LocalTarget | RemoteTarget


def _many(rel: RelationSpec) -> bool:
    return rel.kind in ("one_to_many", "contains_many")


def _holds_key(mv: ModelVersion, rel: RelationSpec) -> bool:
    """Whether this model holds the foreign key (else the target does)."""
    if rel.kind == "one_to_one":
        return rel.foreign_key in mv.spec.fields
    return rel.kind == "many_to_one"


class RelationResolver:
    """Resolves and creates related instances for the host (on the host loop)."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    # -- publish-time checks ----------------------------------------------------------------

    def check(self, planned: list[ModelVersion]) -> None:
        """Refuse relations whose target is known but lacks the key they use.

        A target that is not published yet is fine (it may come later); resolving the
        relation then says so.

        Raises:
            DeployRefused: the target (planned or published) has no such field.
        """
        known = {mv.name.lower(): mv for mv in planned}
        for mv in planned:
            for rel in mv.spec.relations.values():
                target = known.get(rel.target.lower())
                if target is None:
                    entry = self.ctx.registry.find(rel.target)
                    if entry is None or entry.active is None:
                        continue
                    target = entry.get(entry.active)
                held_by_target = not _holds_key(mv, rel) and rel.kind != "contains_many"
                if held_by_target and rel.foreign_key not in target.spec.fields:
                    raise DeployRefused(
                        f"{mv.name}.{rel.name}: {target.name} has no field "
                        f"{rel.foreign_key!r} to hold the {mv.name} id",
                        relation=rel.name,
                    )

    # -- reads -------------------------------------------------------------------------------

    def _relation(self, mv: ModelVersion, name: str) -> RelationSpec:
        rel = mv.spec.relations.get(name)
        if rel is None:
            known = ", ".join(mv.spec.relations) or "none"
            raise NotFound(f"{mv.name} has no relation {name!r}; relations: {known}", relation=name)
        return rel

    def _target(self, rel: RelationSpec, for_id: str | None = None) -> Target | str:
        """Where the target's instances are read, or why there is none."""
        local = self._local_target(rel, for_id)
        if isinstance(local, str):
            remote = self.ctx.remotes.get(rel.target.lower())
            return RemoteTarget(remote) if remote is not None else local
        return LocalTarget(*local)

    def _local_target(
        self, rel: RelationSpec, for_id: str | None = None
    ) -> tuple[ModelVersion, Repository] | str:
        """The target's serving version and repository here, or why there is none."""
        entry = self.ctx.registry.find(rel.target)
        if entry is None or entry.active is None:
            return f"{rel.target} is not published"
        mv = entry.pick(for_id) if for_id is not None else entry.get(entry.active)
        try:
            repo = self.ctx.repository(mv.spec.endpoint)
        except NotFound:
            return f"{rel.target} is not published"
        return mv, repo

    async def lookup(self, mv: ModelVersion, instance: Model, name: str) -> RelationResult:
        """The related model(s) of ``instance``, with the reason when there are none.

        Raises:
            NotFound: ``mv`` declares no relation ``name``.
        """
        rel = self._relation(mv, name)
        many = _many(rel)
        if rel.kind == "contains_many":
            return await self._contains_many(mv, instance, rel)
        if not _holds_key(mv, rel):
            return await self._held_by_target(mv, instance, rel, many)
        key = getattr(instance, rel.foreign_key, None)
        if key is None or key == "":
            return RelationResult(None, f"{mv.name}.{rel.foreign_key} is not set")
        target = self._target(rel, str(key))
        if isinstance(target, str):
            return RelationResult(None, target)
        found = await target.get(str(key))
        if found is None:
            return RelationResult(None, f"no {rel.target} with id {str(key)!r}")
        return RelationResult(found)

    async def _held_by_target(
        self, mv: ModelVersion, instance: Model, rel: RelationSpec, many: bool
    ) -> RelationResult:
        target = self._target(rel)
        if isinstance(target, str):
            return RelationResult([] if many else None, target, many)
        if not await target.has_field(rel.foreign_key):
            return RelationResult(
                [] if many else None,
                f"{rel.target} has no field {rel.foreign_key!r} to hold the {mv.name} id",
                many,
            )
        try:
            found = await target.find(rel.foreign_key, instance.id, None if many else 1)
        except BadQuery as exc:
            return RelationResult([] if many else None, f"{rel.target}: {exc.message}", many)
        if many:
            return RelationResult(found, None if found else f"no {rel.target} refers to it", True)
        if not found:
            return RelationResult(None, f"no {rel.target} has {rel.foreign_key} = {instance.id}")
        return RelationResult(found[0])

    async def _contains_many(
        self, mv: ModelVersion, instance: Model, rel: RelationSpec
    ) -> RelationResult:
        ids = contained_ids(instance, rel)
        if not ids:
            where = rel.array_key or rel.foreign_key
            return RelationResult([], f"{mv.name}.{where} is empty", True)
        target = self._target(rel)
        if isinstance(target, str):
            return RelationResult([], target, True)
        got = await asyncio.gather(*[target.get(i) for i in ids])
        found = [m for m in got if m is not None]
        missing = [i for i, m in zip(ids, got, strict=True) if m is None]
        reason = None
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            reason = f"{len(missing)} of {len(ids)} {rel.target} id(s) not found: {shown}"
        return RelationResult(found, reason, True)

    # -- the model method ----------------------------------------------------------------------

    async def resolve(
        self, mv: ModelVersion, instance: Model, name: str, create: list[dict[str, Any]]
    ) -> Any:
        """``await instance.<name>(*create)``: the related model(s), or create and link.

        Raises:
            NotFound: no such relation, or (creating) the target is not published.
            ValidationFailed: data that does not validate (nothing is created then).
            Conflict: creating from a stale snapshot of ``instance``.
        """
        if not create:
            return (await self.lookup(mv, instance, name)).value
        rel = self._relation(mv, name)
        bad = [c for c in create if not isinstance(c, Mapping)]
        if bad:
            raise ValidationFailed(
                f"{mv.name}.{name}() creates from dicts of {rel.target} fields, got "
                f"{type(bad[0]).__name__}"
            )
        if not _many(rel) and len(create) > 1:
            raise ValidationFailed(
                f"{mv.name}.{name} links one {rel.target}; pass one dict, got {len(create)}"
            )
        target = self._local_target(rel)
        if isinstance(target, str):
            if rel.target.lower() in self.ctx.remotes:
                target = f"{rel.target} is served by another host; create it there"
            raise NotFound(f"cannot create through {mv.name}.{name}: {target}")
        tmv, trepo = target
        return await RelationCreation(self, mv, instance, rel, tmv, trepo).run(
            [dict(c) for c in create]
        )


def contained_ids(instance: Model, rel: RelationSpec) -> list[str]:
    """The distinct target ids a ``contains_many`` relation lists, in order."""
    if rel.array_key is None:
        raw = getattr(instance, rel.foreign_key, None) or []
        keys = list(raw) if isinstance(raw, list | tuple) else []
    else:
        items = getattr(instance, rel.array_key, None) or []
        keys = [_item_key(item, rel.foreign_key) for item in items]
    out: list[str] = []
    for key in keys:
        if key is not None and key != "" and str(key) not in out:
            out.append(str(key))
    return out


def _item_key(item: Any, key: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


class RelationCreation:
    """Creates related instances and links them, or creates nothing."""

    def __init__(
        self,
        resolver: RelationResolver,
        mv: ModelVersion,
        instance: Model,
        rel: RelationSpec,
        tmv: ModelVersion,
        trepo: Repository,
    ) -> None:
        self.ctx = resolver.ctx
        self.mv, self.instance, self.rel = mv, instance, rel
        self.tmv, self.trepo = tmv, trepo
        self.repo = self.ctx.repository(mv.spec.endpoint)

    async def run(self, rows: list[dict[str, Any]]) -> Any:
        mv, rel = self.mv, self.rel
        if not _holds_key(mv, rel) and rel.kind != "contains_many":
            return await self._target_holds_key(rows)
        current = await self.repo.get(mv, self.instance.id)
        if current.revision != self.instance.revision:
            raise Conflict(
                f"{mv.name} {self.instance.id} changed since this copy was read; read it again "
                f"(await {mv.name}.find({self.instance.id!r})) and retry",
                id=self.instance.id,
                revision=current.revision,
            )
        created = await self.trepo.create_many(self.tmv, rows)
        ids = [c.id for c in created]
        if rel.kind == "contains_many":
            changes = self._appended(current, ids)
        else:
            changes = {rel.foreign_key: ids[0]}
        try:
            await self.repo.update(mv, current.id, changes, expect_revision=current.revision)
        except BaseException:
            await self._undo(created)
            raise
        return created if _many(rel) else created[0]

    async def _target_holds_key(self, rows: list[dict[str, Any]]) -> Any:
        mv, rel, key = self.mv, self.rel, self.rel.foreign_key
        if key not in self.tmv.spec.fields:
            raise ValidationFailed(
                f"{rel.target} has no field {key!r} to hold the {mv.name} id", relation=rel.name
            )
        for row in rows:
            if row.get(key) not in (None, self.instance.id):
                raise ValidationFailed(
                    f"{mv.name}.{rel.name}() sets {rel.target}.{key} itself; leave it out",
                    field=key,
                )
            row[key] = self.instance.id
        if rel.kind == "one_to_one":
            query = build_query(self.tmv.cls, {key: self.instance.id}, limit=1)
            existing = await self.trepo.list(self.tmv, query)
            if existing:
                raise Conflict(
                    f"{mv.name} {self.instance.id} already has a {rel.target} "
                    f"({existing[0].id}); update that one instead",
                    id=existing[0].id,
                )
        created = await self.trepo.create_many(self.tmv, rows)
        return created if _many(rel) else created[0]

    def _appended(self, current: Model, ids: list[str]) -> dict[str, Any]:
        rel = self.rel
        if rel.array_key is None:
            return {rel.foreign_key: [*(getattr(current, rel.foreign_key) or []), *ids]}
        items = list(getattr(current, rel.array_key) or [])
        return {rel.array_key: [*items, *({rel.foreign_key: i} for i in ids)]}

    async def _undo(self, created: list[Model]) -> None:
        # Linking failed: the new targets would be orphans. Delete them (best effort;
        # a target whose on_delete vetoes stays, and the log says so).
        for model in created:
            try:
                await self.trepo.delete(self.tmv, model.id)
            except Exception as exc:
                log.warning(
                    "could not remove %s %s after a failed link: %s", self.rel.target, model.id, exc
                )
