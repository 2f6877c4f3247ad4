"""Ports: running adapters for models, with timeouts, retries, breakers and sagas.

The host's entry point for everything port-related (it runs on the host loop):

* ``sync(entry)`` -- after every publish/unpublish/rollback/route of a model:
  subscribe the port listeners the serving versions need, never duplicating; the
  first publish of a model on this host also resumes its interrupted flows.
* ``status(model, port)`` -- the breaker state and binding problems (merged into ``/config``).
* ``report()`` -- every port of every published model, with what is missing
  (``%microlib status``).
* ``await call(mv, instance, name, args, kwargs)`` -- a port method called from Python.
* ``await call_inbound(mv, instance, name, kwargs)`` -- ``POST .../{id}/ports/{port}``:
  only ``type="inbound"`` ports; unknown or not inbound -> ``NotFound``; failures raise
  ``PortFailed`` (502), ``BreakerOpen`` (503), ``PortTimeout`` (504). Returns the instance.
* ``await undo(mv, instance)`` -- compensate (a saga).
* ``await resume(name)`` -- continue interrupted flows and sagas of a model now.
* ``await settle()`` / ``busy`` / ``await close()``.

The work itself is split: :mod:`.port_call` (one port call), :mod:`.saga`
(compensation), :mod:`.orchestrator` (event-triggered ports and resume), with the
pure rules in :mod:`microlib_kernel.domain.breaker` and :mod:`microlib_kernel.domain.saga`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..domain.breaker import CircuitBreaker
from ..domain.saga import resume_events
from ..errors import FlowElsewhere, NotFound, PortFailed, PortUnbound, ValidationFailed
from ..store.leases import LocalLeases
from .binding import required_services
from .leases import FlowLeases
from .orchestrator import Orchestrator
from .port_call import PortExecutor, port_label
from .saga import SagaRunner

if TYPE_CHECKING:
    from ..domain.events import Event
    from ..domain.model import Model
    from ..domain.ports import PortSpec
    from .context import HostContext
    from .registry import ModelEntry, ModelVersion

log = logging.getLogger("microlib_kernel.ports")
T = TypeVar("T")


class PortRunner:
    """Runs the ports of a host's models.

    Args:
        ctx: the host's context (its clock drives the breakers, its rng the retry
            jitter: tests inject both through ``Host(clock=..., rng=...)``).
    """

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        self.rng = ctx.rng
        self.closed = False
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self._last_errors: dict[tuple[str, str], str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running: set[asyncio.Task[Any]] = set()
        self.executor = PortExecutor(self)
        self.saga = SagaRunner(self)
        self.orchestrator = Orchestrator(self)
        self.leases = self._leases()

    def _leases(self) -> FlowLeases:
        host = self.ctx
        store = host.datasource.lease_store()
        node = host.node
        if store is None:
            if not host.datasource.exclusive:
                log.warning(
                    "%s is shared by several processes but keeps no flow leases: two "
                    "hosts may run one instance's ports",
                    host.datasource.describe(),
                )
            return FlowLeases(LocalLeases(host.clock.monotonic), node, shared=False)
        return FlowLeases(store, node, ttl=host.settings.lease_ttl, shared=True)

    def start(self) -> None:
        """Start renewing leases and taking over dead hosts' flows (on the host loop)."""
        self.leases.start(self.orchestrator.resume_key, self._finished, self._serves)

    def _serves(self, key: str) -> bool:
        """Whether this host publishes the model of a lease key (``endpoint/id``)."""
        entry = self.ctx.registry.by_endpoint(key.partition("/")[0])
        return entry is not None and entry.published

    @contextlib.asynccontextmanager
    async def owning(self, endpoint: str, id: str, *, retry: bool = False) -> AsyncIterator[None]:
        """Hold the lease on ``endpoint/id`` while the block runs.

        Args:
            retry: retry a claim that fails on a database error (nobody waits: an
                event-triggered port); see :mod:`.leases`.

        Raises:
            FlowElsewhere: another live host holds it (runs this instance's flow).
            ClaimFailed: with ``retry``, the claim kept failing.
        """
        key = f"{endpoint}/{id}"
        if not await self.leases.acquire(key, retry=retry):
            raise FlowElsewhere(
                f"the flow of {endpoint}/{id} is running on another host; try again later",
                id=id,
            )
        try:
            yield
        finally:
            # Not awaited here: a cancelled caller must still give its hold back.
            self.spawn(self.leases.done(key))

    async def _finished(self, key: str) -> bool:
        """Whether the instance behind ``key`` has no port or saga step left to run."""
        endpoint, _, id = key.partition("/")
        entry = self.ctx.registry.by_endpoint(endpoint)
        if entry is None or not entry.versions:
            return True
        repo = self.ctx.repository(endpoint)
        record = await repo.store.get(repo.table, id)
        if record is None:
            return True
        compensation = record.get("compensation")
        if compensation == "running":
            return False
        mv = entry.pick(id)
        return not resume_events(list(record.get("port_flow") or []), compensation, mv.spec.ports)

    # -- registry hooks -----------------------------------------------------------------

    def sync(self, entry: ModelEntry) -> None:
        """(Re)subscribe ``entry``'s port listeners; resume its flows on first publish."""
        if self.closed:
            return
        for version in entry.routes:
            mv = entry.versions.get(version)
            if mv is not None:
                for spec in mv.spec.ports.values():
                    self.breaker(mv, spec)  # so /config shows every breaker from the start
        self.orchestrator.sync(entry)

    def breaker(self, mv: ModelVersion, spec: PortSpec) -> CircuitBreaker | None:
        """The breaker of (model, port), shared by every instance and version."""
        cfg = spec.circuit_breaker
        if cfg is None:
            return None
        key = (mv.name.lower(), spec.name)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = self._breakers[key] = CircuitBreaker(cfg, clock=self.ctx.clock.monotonic)
        elif breaker.config != cfg:
            breaker.config = cfg  # a republish changed the thresholds: keep the history
        return breaker

    def ports_of(self, mv: ModelVersion) -> dict[str, PortSpec]:
        """``mv``'s ports, plus ports only earlier versions declared (for undoing them)."""
        entry = self.ctx.registry.find(mv.name)
        merged: dict[str, PortSpec] = {}
        if entry is not None:
            for other in entry.versions.values():
                merged.update(other.spec.ports)
        merged.update(mv.spec.ports)
        return merged

    # -- introspection ----------------------------------------------------------------------

    def status(self, model: str, port: str) -> dict[str, Any]:
        """Run-time state of a port: its breaker (``None`` without one), problems, last error."""
        key = (model.lower(), port)
        breaker = self._breakers.get(key)
        problems: list[str] = []
        entry = self.ctx.registry.find(model)
        if entry is not None and entry.versions:
            mv = entry.versions.get(entry.active or "") or entry.latest()
            spec = mv.spec.ports.get(port)
            if spec is not None:
                problems = self.problems(spec)
        return {
            "breaker": breaker.snapshot() if breaker is not None else None,
            "problems": problems,
            "last_error": self._last_errors.get(key),
        }

    def problems(self, spec: PortSpec) -> list[str]:
        """What keeps ``spec`` from running: unregistered adapters or services."""
        if spec.disabled:
            return []
        names = [spec.adapter]
        if spec.undo:
            names.append(spec.undo)
        if spec.circuit_breaker and spec.circuit_breaker.fallback:
            names.append(spec.circuit_breaker.fallback)
        out = []
        for name in names:
            fn = self.ctx.adapters.find(name)
            if fn is None:
                out.append(f"adapter {name} is not registered")
                continue
            for service in required_services(fn, self.ctx.services):
                out.append(f"adapter {name} needs service {service!r}, which is not registered")
        return out

    def report(self) -> list[dict[str, Any]]:
        """Every port of every published model (active version), for ``%microlib status``.

        Each row: ``model``, ``version``, ``port``, ``adapter``, ``type``, ``consumes``,
        ``produces``, ``undo``, ``disabled``, ``listening`` (an event subscription
        exists), ``ok`` (nothing missing), ``problems``, ``breaker``, ``last_error``.
        """
        rows = []
        for entry in self.ctx.registry.entries():
            mv = entry.versions.get(entry.active or "")
            if mv is None:
                continue
            listening = {s.key[2] for s in self.orchestrator.subscriptions(entry.name)}
            for name, spec in mv.spec.ports.items():
                state = self.status(entry.name, name)
                rows.append(
                    {
                        "model": entry.name,
                        "version": mv.version,
                        "port": name,
                        "adapter": spec.adapter,
                        "type": spec.type,
                        "consumes": spec.consumes,
                        "produces": spec.produces,
                        "undo": spec.undo,
                        "disabled": spec.disabled,
                        "listening": name in listening,
                        "ok": not state["problems"],
                        **state,
                    }
                )
        return rows

    # -- calls --------------------------------------------------------------------------

    def _spec(self, mv: ModelVersion, name: str) -> PortSpec:
        spec = mv.spec.ports.get(name)
        if spec is None:
            known = ", ".join(mv.spec.ports) or "none"
            raise NotFound(f"{mv.name} has no port {name!r}; ports: {known}", port=name)
        return spec

    async def call(
        self,
        mv: ModelVersion,
        instance: Model,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Model:
        """Run port ``name`` for ``instance`` (``await order.authorize()``).

        Returns:
            The instance after the port (unchanged for a disabled port).

        Raises:
            NotFound: no such port, or the instance is gone.
            PortFailed, PortTimeout, BreakerOpen: the port failed for good (the saga
                has compensated by then); PortUnbound: an adapter or service is missing.
        """
        spec = self._spec(mv, name)
        if spec.disabled:
            return instance
        return await self.run(mv, instance, spec, tuple(args), dict(kwargs))

    async def call_inbound(
        self, mv: ModelVersion, instance: Model, name: str, kwargs: dict[str, Any]
    ) -> Model:
        """``POST /models/{endpoint}/{id}/ports/{port}``: the JSON body as keyword arguments.

        Raises:
            NotFound: no such port, or it is not ``type="inbound"``.
            ValidationFailed: a body that is not an object or does not fit the adapter.
            PortFailed (502), BreakerOpen (503), PortTimeout (504).
        """
        spec = mv.spec.ports.get(name)
        if spec is None or spec.type != "inbound":
            raise NotFound(f"{mv.name} has no inbound port {name!r}", port=name)
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ValidationFailed(f"port {name!r} takes a JSON object of keyword arguments")
        if spec.disabled:
            return instance
        return await self.run(mv, instance, spec, (), kwargs, protect=True)

    async def run(
        self,
        mv: ModelVersion,
        instance: Model,
        spec: PortSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        event: Event | None = None,
        protect: bool = False,
    ) -> Model:
        """Run ``spec`` on the current state of ``instance``; compensate if it fails for good."""
        if self.closed:
            raise PortFailed(f"{port_label(mv, spec)}: the host is closing")
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        key = (mv.name.lower(), spec.name)
        # A direct caller gets the exception; only an event-triggered failure, which
        # nobody awaits, is worth a warning in the log.
        level = logging.WARNING if event is not None else logging.INFO
        try:
            # An event-triggered port has no caller to answer 503: its claim is retried.
            async with self.owning(mv.spec.endpoint, instance.id, retry=event is not None):
                repo = self.ctx.repository(mv.spec.endpoint)
                if not repo.store.exclusive:
                    # Other hosts write this table: the cached copy may predate a port
                    # they completed (their invalidation can arrive after their event).
                    repo.forget(instance.id)
                current = await repo.get(mv, instance.id)
                if event is not None and (
                    spec.name in current.port_flow or current.compensation is not None
                ):
                    return current  # done (or compensated) already, maybe elsewhere
                return await self.executor.run(
                    mv, current, spec, args, kwargs, event=event, protect=protect
                )
        except FlowElsewhere:
            raise
        except PortUnbound as exc:
            # Nothing ran, so there is nothing to compensate: the flow waits for the
            # binding (a direct call or a restart continues it).
            self._last_errors[key] = exc.message
            log.log(level, "%s", exc.message)
            raise
        except PortFailed as exc:
            self._last_errors[key] = exc.message
            log.log(level, "%s", exc.message)
            await self.saga.compensate(mv, instance.id, f"port {spec.name} failed: {exc.message}")
            raise
        finally:
            if task is not None:
                self._running.discard(task)

    async def undo(self, mv: ModelVersion, instance: Model) -> Model:
        """Compensate ``instance``'s completed ports (``await order.undo()``)."""
        return await self.saga.compensate(mv, instance.id, "requested")

    async def resume(self, name: str) -> int:
        """Continue ``name``'s interrupted flows and sagas; returns how many."""
        return await self.orchestrator.resume(name)

    # -- background work and shutdown ---------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task the runner waits for (:meth:`settle`) and cancels at close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, PortFailed | NotFound):
                log.error("port background task failed", exc_info=exc)

    @property
    def busy(self) -> bool:
        """Whether resumes or sagas are running in the background."""
        return bool(self._tasks)

    async def settle(self) -> None:
        """Wait for the background tasks started so far (and those they start)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop listening and cancel what still runs (no write happens after this)."""
        self.closed = True
        self.orchestrator.close()
        await self.leases.close()
        pending = [t for t in (*self._tasks, *self._running) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
