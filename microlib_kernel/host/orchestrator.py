"""Orchestration: ports that run when an instance emits the event they consume.

One broker subscription per (model, port, consumed event), whatever the number of
versions or publishes: :meth:`Orchestrator.sync` diffs what the serving versions need
against what is subscribed. When the event arrives, the listener asks the registry
which version serves the instance (``entry.pick(id)``, sticky) and runs *that*
version's port, so a rollback or a route change takes effect on the next event.

An instance runs a consumer port at most once per flow: a port already in its
``port_flow``, or already running for it, is skipped; an instance under compensation
(any non-``None`` ``compensation``) runs no event-triggered port ever again.

A port whose lease cannot be claimed (the database did not answer, even after the
retries of :meth:`FlowLeases.acquire`) has not run: the event is handed to the lease
reaper, which runs it again on its next round (:meth:`FlowLeases.retry_later`).

Resume: the first time a model is published on a host, interrupted flows continue
from their last completed port (its ``produces`` event is emitted again) and sagas left
``"running"`` by a crash continue.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..domain.events import Event, Subscription
from ..domain.saga import resume_events
from ..errors import FlowElsewhere, NotFound, PortFailed
from .leases import ClaimFailed

if TYPE_CHECKING:
    from .ports import PortRunner
    from .registry import ModelEntry

log = logging.getLogger("microlib_kernel.ports")


class Orchestrator:
    """Port subscriptions of every model, and resume after a restart."""

    def __init__(self, runner: PortRunner) -> None:
        self.runner = runner
        self.ctx = runner.ctx
        self._subs: dict[str, dict[tuple[str, str], Subscription]] = {}
        self._inflight: set[tuple[str, str, str]] = set()
        self._started: set[str] = set()

    def subscriptions(self, model: str) -> list[Subscription]:
        """The port listeners of ``model`` (for tests and status)."""
        return list(self._subs.get(model.lower(), {}).values())

    def sync(self, entry: ModelEntry) -> None:
        """Subscribe exactly the listeners the serving versions of ``entry`` need."""
        model = entry.name.lower()
        wanted: set[tuple[str, str]] = set()
        if entry.published:
            for version in entry.routes:
                mv = entry.versions.get(version)
                if mv is None:
                    continue
                for name, spec in mv.spec.ports.items():
                    if spec.consumes is not None and not spec.disabled:
                        wanted.add((name, spec.consumes))
        subs = self._subs.setdefault(model, {})
        for key in [k for k in subs if k not in wanted]:
            subs.pop(key).cancel()
        for port, pattern in sorted(wanted - subs.keys()):
            subs[(port, pattern)] = self.ctx.events.on(
                pattern,
                self._listener(entry.name, port, pattern),
                key=("port", model, port, pattern),
                owner=("ports", model),
            )
        if entry.published and model not in self._started:
            self._started.add(model)
            self.runner.spawn(self.resume(entry.name))

    def _listener(self, model: str, port: str, pattern: str) -> Callable[[Event], Awaitable[None]]:
        async def run_port(event: Event) -> None:
            await self.on_event(model, port, pattern, event)

        run_port.__qualname__ = f"port {model}.{port} <- {pattern}"
        return run_port

    async def on_event(self, model: str, port: str, pattern: str, event: Event) -> None:
        """Run ``port`` for the instance the event is about, if it should run."""
        if self.runner.closed or event.model_id is None:
            return
        if event.model is not None and event.model.lower() != model.lower():
            return  # another model's instance (ids are unique per table, not globally)
        entry = self.ctx.registry.find(model)
        if entry is None or not entry.published:
            return
        key = (model.lower(), event.model_id, port)
        if key in self._inflight:
            return  # already running for this instance: one run per flow step
        self._inflight.add(key)
        try:
            mv = entry.pick(event.model_id)
            spec = mv.spec.ports.get(port)
            if spec is None or spec.disabled or spec.consumes != pattern:
                return  # the version serving this instance has no such consumer
            try:
                instance = await self.ctx.repository(mv.spec.endpoint).get(mv, event.model_id)
            except NotFound:
                return
            if instance.compensation is not None or port in instance.port_flow:
                return
            await self.runner.run(mv, instance, spec, (), {}, event=event)
        except FlowElsewhere:
            pass  # another host owns this instance's flow and runs its ports
        except ClaimFailed as exc:
            # Nothing ran and nothing is held. Dropping the event would strand the flow
            # (a flow's first step is not found by a start-up resume): retry it later.
            log.warning(
                "%s %s: port %s not started, its lease could not be claimed (%s); the "
                "lease reaper tries again",
                model, event.model_id, port, exc.__cause__ or exc,
            )  # fmt: skip
            self.runner.leases.retry_later(
                f"{entry.endpoint}/{event.model_id}",
                port,
                lambda: self.runner.spawn(self.on_event(model, port, pattern, event)),
            )
        except PortFailed:
            pass  # reported by events, the log and the saga; nobody awaits a listener
        finally:
            self._inflight.discard(key)

    async def resume(self, model: str) -> int:
        """Continue ``model``'s interrupted flows and sagas; returns how many it resumed."""
        entry = self.ctx.registry.find(model)
        if entry is None or not entry.published:
            return 0
        if not any(mv.spec.ports for mv in entry.versions.values()):
            return 0  # no ports, nothing to resume: do not read the table
        repo = self.ctx.repository(entry.endpoint)
        resumed = 0
        for record in await repo.store.records(repo.table):
            resumed += await self._resume_record(entry, record)
        return resumed

    async def resume_key(self, key: str) -> None:
        """Resume the flow behind a lease key (``endpoint/id``) taken over from a dead host."""
        endpoint, _, id = key.partition("/")
        entry = self.ctx.registry.by_endpoint(endpoint)
        if entry is None or not entry.published:
            return
        repo = self.ctx.repository(endpoint)
        record = await repo.store.get(repo.table, id)
        if record is not None:
            await self._resume_record(entry, record)

    async def _resume_record(self, entry: ModelEntry, record: dict[str, Any]) -> bool:
        id = record.get("id")
        if not isinstance(id, str):
            return False
        mv = entry.pick(id)
        flow = list(record.get("port_flow") or [])
        compensation = record.get("compensation")
        if compensation == "running":
            log.info("%s %s: continuing an interrupted compensation", entry.name, id)
            self.runner.spawn(self._continue_saga(mv, id))
            return True
        events = resume_events(flow, compensation, mv.spec.ports)
        if not events:
            return False
        try:
            # Another live host may be running this flow right now: then it is not
            # interrupted, and it is not ours to resume.
            async with self.runner.owning(entry.endpoint, id):
                for event in events:
                    log.info("%s %s: resuming its flow at %s", entry.name, id, event)
                    data: dict[str, Any] = {"resumed": True, "port_flow": flow}
                    self.ctx.events.publish(Event(event, data, model=entry.name, model_id=id))
        except FlowElsewhere:
            return False
        return True

    async def _continue_saga(self, mv: Any, id: str) -> None:
        try:
            await self.runner.saga.compensate(mv, id, "resumed after a restart")
        except (NotFound, FlowElsewhere):
            pass

    def close(self) -> None:
        for subs in self._subs.values():
            for sub in subs.values():
                sub.cancel()
        self._subs.clear()
