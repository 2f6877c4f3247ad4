"""Deployment changes, one at a time and recorded: publish, unpublish, rollback, route.

Every change runs under the host's deploy lock (versions are numbered and swapped in
order, two deploys of one model never interleave) and is appended to the deployment
log before it is acknowledged: not recorded means not done. On a log several hosts
share (PostgreSQL) a change also takes the log's lock and first applies what other
hosts appended, and the cluster link then tells them to catch up. At start the
rollout replays the log (:mod:`.restore`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..domain.model import Model
from ..errors import DatasourceError, ServiceUnavailable
from ..store.deployments import DeploymentLog, DeploymentRecord
from .deploy import Deployment, Published
from .restore import ModelState, RestoreReport, catch_up, restore

if TYPE_CHECKING:
    from .cluster import ClusterLink
    from .config_view import ConfigView
    from .context import HostContext
    from .ports import PortRunner
    from .publishing import PublishPipeline
    from .registry import ModelEntry

log = logging.getLogger("microlib_kernel.host")


class Rollout:
    """The deployment changes of one host (see the module docstring).

    Args:
        ctx: the host's context.
        pipeline: publishes sources and classes.
        ports: the port runner (told when a model's serving versions change).
        config: renders a model's ``/config`` entry (what route changes return).
        journal: the deployment log (``None``: nothing survives a restart).
    """

    def __init__(
        self,
        ctx: HostContext,
        pipeline: PublishPipeline,
        ports: PortRunner,
        config: ConfigView,
        journal: DeploymentLog | None,
    ) -> None:
        self.ctx = ctx
        self.pipeline = pipeline
        self.ports = ports
        self.config = config
        self.journal = journal
        #: What was deployed here, newest last (``GET /deploy``).
        self.history: collections.deque[Deployment] = collections.deque(maxlen=1000)
        #: What the start-up replay of the log did (``/health``).
        self.restore_report = RestoreReport()
        #: The bus link that announces deploys to other hosts (set once joined).
        self.cluster: ClusterLink | None = None
        self._lock = asyncio.Lock()
        #: The last deployment record this host applied (its own or another host's).
        self.seq = 0

    async def restore(self) -> RestoreReport:
        """Replay the deployment log: what was deployed before serves again, as it was."""
        if self.journal is None:
            return self.restore_report
        records = await asyncio.to_thread(self.journal.load)
        self.restore_report = await restore(self, records)
        self.seq = max((r.seq for r in records), default=0)
        return self.restore_report

    async def publish(
        self,
        obj: type[Model] | Sequence[type[Model]] | str,
        *,
        kind: str = "model",
        name: str | None = None,
        version: str | None = None,
        who: str = "python",
    ) -> list[Published]:
        """Publish ``obj`` (see :meth:`Host.publish`); ``who`` goes to the deployment log."""
        async with self._deploying():
            unchanged = (
                self.pipeline.unchanged(obj, kind, name, version)
                if self.ctx.state.starting
                else None
            )
            if unchanged is not None:
                return unchanged
            published = await self.pipeline.publish(
                obj, kind=kind, name=name, version=version, who=who, record=self.record
            )
            self._note(kind, [p.name for p in published], [p.version for p in published], who)
        return published

    async def record(self, record: DeploymentRecord) -> None:
        """Append ``record`` to the deployment log before the change is acknowledged.

        Raises:
            ServiceUnavailable: the log refused it (the caller then changes nothing).
        """
        if self.journal is None:
            return
        try:
            done = await asyncio.to_thread(self.journal.append, record)
            self.seq = max(self.seq, done.seq)
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
        async with self._lock:
            log_ = self.journal
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
                before = self.seq
                yield
                if self.cluster is not None and self.seq > before:
                    self.cluster.announce_deploy(self.seq)
            finally:
                if log_ is not None and shared:
                    await asyncio.to_thread(log_.unlock)

    async def _catch_up(self) -> RestoreReport:
        """Apply deployment records other hosts appended since we last looked."""
        log_ = self.journal
        if log_ is None:
            return RestoreReport()
        records = await asyncio.to_thread(log_.load)
        if not records or records[-1].seq <= self.seq:
            return RestoreReport()
        report = await catch_up(self, records, self.seq)
        self.seq = records[-1].seq
        return report

    async def caught_up(self, seq: int | None = None) -> None:
        """Apply deployment records other hosts appended: up to ``seq``, which another
        host announced, or whatever there is (``None``: after the bus was down)."""
        if seq is not None and seq <= self.seq:
            return
        async with self._lock:
            try:
                await self._catch_up()
            except DatasourceError as exc:
                # The next announcement, or this host's next deploy, catches up.
                log.warning("could not read the deployment log: %s", exc.message)

    def _note(self, kind: str, names: list[str], versions: list[str | None], who: str) -> None:
        self.history.append(
            Deployment(
                time=self.ctx.clock.now(), kind=kind, names=names, versions=versions, who=who
            )
        )

    async def unpublish(self, name: str, *, who: str = "python") -> ModelEntry:
        """Remove a model's endpoints (:meth:`Host.unpublish`); ``who`` goes to the log."""
        async with self._deploying():
            entry = self.ctx.registry.get(name)
            if entry.published and _recorded(entry):
                await self.record(DeploymentRecord("unpublish", (entry.name,), (None,), who=who))
            entry = self.ctx.registry.unpublish(name)
            self.ctx.events.off_owner(("model", entry.name.lower()))
            self.ports.sync(entry)
            self._note("unpublish", [entry.name], [None], who)
        return entry

    async def rollback(
        self, name: str, version: str | None = None, *, who: str = "python"
    ) -> dict[str, Any]:
        """Route everything to ``version`` (:meth:`Host.rollback`); ``who`` goes to the log."""
        async with self._deploying():
            entry = self.ctx.registry.get(name)
            before = (dict(entry.routes), entry.published)
            entry = self.ctx.registry.rollback(name, version)
            try:
                if _recorded(entry):
                    await self.record(
                        DeploymentRecord("rollback", (entry.name,), (entry.active,), who=who)
                    )
            except BaseException:
                entry.routes, entry.published = before  # not recorded, so not done
                raise
            self.ports.sync(entry)
            self._note("rollback", [entry.name], [entry.active], who)
            return self.config.entry(entry)

    async def route(
        self, name: str, weights: Mapping[str, float], *, who: str = "python"
    ) -> dict[str, Any]:
        """Split traffic by weight (:meth:`Host.route`); ``who`` goes to the log."""
        async with self._deploying():
            entry = self.ctx.registry.get(name)
            before = (dict(entry.routes), entry.published)
            entry = self.ctx.registry.route(name, weights)
            try:
                if _recorded(entry):
                    record = DeploymentRecord(
                        "route", (entry.name,), who=who, weights=dict(entry.routes)
                    )
                    await self.record(record)
            except BaseException:
                entry.routes, entry.published = before  # not recorded, so not done
                raise
            self.ports.sync(entry)
            self._note("route", [entry.name], list(entry.routes), who)
            return self.config.entry(entry)

    async def restore_source(
        self, record: DeploymentRecord, wanted: Mapping[str, str]
    ) -> list[str]:
        """Run one recorded source again (see :meth:`PublishPipeline.restore_source`)."""
        return await self.pipeline.restore_source(record, wanted)

    def apply_restored_state(self, state: ModelState) -> str | None:
        """Give a restored model its recorded routes and published flag.

        Returns:
            A note when the recorded state could not be applied exactly (a routed
            version failed to restore), else ``None``.
        """
        entry = self.ctx.registry.find(state.name)
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
            self.ctx.events.off_owner(("model", entry.name.lower()))
            self.ports.sync(entry)
        return note


def _unlock_if_taken(locking: asyncio.Future[None], log_: DeploymentLog) -> None:
    """Release a cluster deploy lock whose waiter was cancelled, once it was taken."""
    if not locking.cancelled() and locking.exception() is None:
        threading.Thread(target=log_.unlock, name="microlib-unlock", daemon=True).start()


def _recorded(entry: ModelEntry) -> bool:
    """Whether a change of ``entry``'s routes goes to the deployment log.

    Versions published as Python classes (``host.publish(Order)``, a ``%%microlib
    model`` cell in the in-kernel host) have no source to restore from, so a change
    routing traffic to one of them is not recorded: a restarted host could not honour it.
    """
    return all(entry.versions[v].source is not None for v in entry.routes if v in entry.versions)
