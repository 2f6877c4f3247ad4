"""Restart safety: a starting host replays its deployment log (DESIGN.md §7, issue 16).

Two steps:

1. :func:`plan_restore` (pure, no code runs) replays the log on a scratch
   :class:`VersionRegistry` holding placeholder versions. The registry's own rules
   (evergreen routes, pruning to ``keep`` versions, rollback to the previous version)
   give the final versions, routes and published flags, so they cannot drift from what
   the running host did. It also picks the sources worth running: every module (a model
   version may import the module as it was then), the last source of each adapter and
   service (they are looked up by name at call time), and the model sources of versions
   still kept (pruned ones are never run).
2. :func:`restore` runs those sources in log order on the host, re-creating each version
   under its recorded number, then applies the final routes. A source that no longer
   runs is reported (:class:`RestoreReport`, in the log and in ``/health``) and the
   others are restored; a route to a version that failed falls back to the newest
   version that was restored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from ..errors import MicrolibError
from ..store.deployments import DeploymentRecord
from .deploy import Deployment
from .registry import ModelVersion, VersionRegistry

if TYPE_CHECKING:
    import datetime as dt

    from .rollout import Rollout

log = logging.getLogger("microlib_kernel.host.restore")
_PLAIN_KINDS = ("adapter", "service", "module")


@dataclass
class ModelState:
    """A model's final state in the log: versions (oldest first), routes, published."""

    name: str
    versions: list[str]
    routes: dict[str, float]
    published: bool
    deploys: int


@dataclass
class RestorePlan:
    """What a host must run and apply to be as its log says.

    Attributes:
        steps: source records to run, in log order, each with the model versions it must
            re-create (lower-case name -> version; empty for non-model sources).
        models: the final state of every model, by lower-case name.
        skipped: records that could not be replayed (e.g. a route naming a version that
            was published as a class, which the log does not hold), with the reason.
    """

    steps: list[tuple[DeploymentRecord, dict[str, str]]] = field(default_factory=list)
    models: dict[str, ModelState] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


@dataclass
class RestoreReport:
    """What a restore did: versions re-created, and what failed (and why)."""

    records: int = 0
    restored: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line for a terminal and the log."""
        sources = [r for r in self.restored if r.split(" ", 1)[0] in _PLAIN_KINDS]
        versions = len(self.restored) - len(sources)
        text = (
            f"restored {versions} model version(s) and {len(sources)} adapter/service/module "
            f"source(s) from {self.records} deployment record(s)"
        )
        if self.failed:
            text += "; FAILED: " + "; ".join(
                f"{f['name']} {f['version'] or ''}".rstrip() + f": {f['error']}"
                for f in self.failed
            )
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "restored": list(self.restored),
            "failed": list(self.failed),
            "notes": list(self.notes),
        }


def plan_restore(records: list[DeploymentRecord], keep: int) -> RestorePlan:
    """The restore plan of a log (pure: runs no source)."""
    plan = RestorePlan()
    scratch = VersionRegistry(keep=keep)
    last_source: dict[tuple[str, str], int] = {}
    for record in records:
        try:
            _replay(scratch, record)
        except MicrolibError as exc:
            plan.skipped.append(
                f"record {record.seq} ({record.kind} {', '.join(record.names)}): {exc.message}"
            )
            continue
        if record.kind in ("adapter", "service") and record.names:
            last_source[(record.kind, record.names[0])] = record.seq
    kept = {
        (entry.name.lower(), version)
        for entry in scratch.entries(published_only=False)
        for version in entry.versions
    }
    for record in records:
        if record.source is None:
            continue
        if record.kind == "model":
            wanted = {
                n.lower(): v
                for n, v in zip(record.names, record.versions, strict=False)
                if v is not None and (n.lower(), v) in kept
            }
            if wanted:
                plan.steps.append((record, wanted))
        elif record.kind == "module" or (
            record.names and last_source.get((record.kind, record.names[0])) == record.seq
        ):
            plan.steps.append((record, {}))
    for entry in scratch.entries(published_only=False):
        plan.models[entry.name.lower()] = ModelState(
            entry.name, list(entry.versions), dict(entry.routes), entry.published, entry.deploys
        )
    return plan


def _replay(scratch: VersionRegistry, record: DeploymentRecord) -> None:
    """Apply one record to the scratch registry (placeholder versions, no code)."""
    name = record.names[0] if record.names else ""
    if record.kind == "model":
        for n, v, endpoint in zip(record.names, record.versions, record.endpoints, strict=False):
            if v is None:
                continue
            spec = cast(Any, SimpleNamespace(endpoint=endpoint))
            scratch.add(ModelVersion(n, v, cast(Any, None), spec, record.time))
    elif record.kind == "rollback":
        scratch.rollback(name, record.versions[0] if record.versions else None)
    elif record.kind == "route":
        scratch.route(name, record.weights or {})
    elif record.kind == "unpublish":
        scratch.unpublish(name)


def deployment_of(record: DeploymentRecord) -> Deployment:
    """The ``GET /deploy`` entry of a record."""
    versions: list[str | None]
    if record.kind == "route":
        versions = list(record.weights or {})
    elif record.kind == "unpublish":
        versions = [None]
    else:
        versions = list(record.versions)
    time: dt.datetime = record.time
    return Deployment(
        time=time, kind=record.kind, names=list(record.names), versions=versions, who=record.who
    )


async def restore(rollout: Rollout, records: list[DeploymentRecord]) -> RestoreReport:
    """Re-create the versions of ``records`` through ``rollout`` and apply their final routes.

    Never raises for a source that fails: the failure is in the report.
    """
    report = RestoreReport(records=len(records))
    for record in records:
        rollout.history.append(deployment_of(record))
    plan = plan_restore(records, rollout.ctx.registry.keep)
    report.notes.extend(plan.skipped)
    for record, wanted in plan.steps:
        try:
            restored = await rollout.restore_source(record, wanted)
        except Exception as exc:  # any failure of the user's code is reported, not raised
            message = (
                exc.message if isinstance(exc, MicrolibError) else f"{type(exc).__name__}: {exc}"
            )
            names: list[tuple[str, str | None]] = list(wanted.items()) or [
                (record.names[0] if record.names else "?", None)
            ]
            for n, v in names:
                display = plan.models[n].name if n in plan.models else n
                report.failed.append(
                    {"name": display, "version": v, "kind": record.kind, "error": message}
                )
            continue
        report.restored.extend(restored)
    for state in plan.models.values():
        note = rollout.apply_restored_state(state)
        if note:
            report.notes.append(note)
    for line in report.notes:
        log.warning("restore: %s", line)
    (log.error if report.failed else log.info)("%s", report.summary())
    return report


async def catch_up(rollout: Rollout, records: list[DeploymentRecord], after: int) -> RestoreReport:
    """Apply the records after ``after`` that another host appended (issue 16).

    Hosts sharing a deployment log (PostgreSQL) hear on the bus that it grew; each runs
    the new sources and takes the final routes of the models they touch, exactly as a
    restart would, without re-running what it already serves.
    """
    new = [r for r in records if r.seq > after]
    report = RestoreReport(records=len(new))
    if not new:
        return report
    for record in new:
        rollout.history.append(deployment_of(record))
    plan = plan_restore(records, rollout.ctx.registry.keep)
    touched: set[str] = set()
    for record in new:
        touched.update(n.lower() for n in record.names)
    for record, wanted in plan.steps:
        if record.seq <= after:
            continue
        try:
            report.restored.extend(await rollout.restore_source(record, wanted))
        except Exception as exc:  # reported, as in a restore: the others still apply
            message = (
                exc.message if isinstance(exc, MicrolibError) else f"{type(exc).__name__}: {exc}"
            )
            names: list[tuple[str, str | None]] = list(wanted.items()) or [
                (record.names[0] if record.names else "?", None)
            ]
            for n, v in names:
                report.failed.append(
                    {"name": n, "version": v, "kind": record.kind, "error": message}
                )
    for name, state in plan.models.items():
        if name in touched:
            note = rollout.apply_restored_state(state)
            if note:
                report.notes.append(note)
            entry = rollout.ctx.registry.find(state.name)
            if entry is not None:
                # The other host may have migrated the rows (migrate() runs where the
                # deploy runs): copies cached here from before are not current.
                rollout.ctx.cache.clear(entry.endpoint)
    (log.error if report.failed else log.info)(
        "caught up with %d deployment record(s) from other hosts: %s",
        len(new),
        report.summary(),
    )
    return report
