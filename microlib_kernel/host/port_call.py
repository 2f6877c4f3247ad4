"""Running one port for one instance: attempts, retries, the breaker, the fallback, the write.

A call resolves its adapter by name at every attempt (late binding), injects services,
runs the attempt under the port's timeout, retries failures with exponential backoff,
consults the port's circuit breaker, and on success saves the adapter's changes and
the port's name in ``port_flow`` in one write, then emits ``produces``. When it fails
for good it raises; the caller (``PortRunner``) starts the saga.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..domain.events import Event
from ..domain.retry import backoff_delay
from ..errors import (
    BreakerOpen,
    Conflict,
    NotFound,
    PortFailed,
    PortTimeout,
    ValidationFailed,
)
from .attempt import Outcome, attempt
from .binding import bind, resolve

if TYPE_CHECKING:
    from ..domain.breaker import CircuitBreaker
    from ..domain.model import Model
    from ..domain.ports import PortSpec
    from .ports import PortRunner
    from .registry import ModelVersion
    from .repository import Repository

log = logging.getLogger("microlib_kernel.ports")

_COMMIT_TRIES = 20


async def commit(
    repo: Repository,
    mv: ModelVersion,
    id: str,
    build: Callable[[Model], dict[str, Any]],
    *,
    hooks: bool,
) -> Model:
    """Apply ``build(current)`` to the current state of ``id`` (framework fields allowed).

    The changes are computed from the state they apply to (``port_flow`` appends never
    lose each other); a write that raced another is rebuilt and retried.

    Raises:
        NotFound: the instance was deleted.
        ValidationFailed: the changes do not validate (or ``on_update`` refused them).
    """
    for _ in range(_COMMIT_TRIES):
        current = await repo.get(mv, id)
        try:
            return await repo.update(
                mv,
                id,
                build(current),
                expect_revision=current.revision,
                hooks=hooks,
                framework=True,
            )
        except Conflict:
            await asyncio.sleep(0)
    raise Conflict(f"{mv.name} {id} kept changing; the port's result could not be saved", id=id)


def port_label(mv: ModelVersion, spec: PortSpec) -> str:
    """``Order.authorize`` (for messages)."""
    return f"{mv.name}.{spec.name}"


class PortExecutor:
    """Executes ports and undo adapters for a :class:`PortRunner`."""

    def __init__(self, runner: PortRunner) -> None:
        self.runner = runner
        self.ctx = runner.ctx

    # -- events -----------------------------------------------------------------------------

    def emit(self, mv: ModelVersion, id: str, suffix: str, data: dict[str, Any]) -> None:
        """Publish ``{model}.{suffix}`` about instance ``id``."""
        self.ctx.events.publish(
            Event(f"{mv.spec.event_prefix}.{suffix}", data, model=mv.name, model_id=id)
        )

    # -- the forward call ----------------------------------------------------------------

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
        """Run ``spec`` for ``instance``; returns the instance after the port.

        Raises:
            PortFailed: every attempt failed (``PortTimeout`` when the last one timed out).
            BreakerOpen: the breaker is open and the port has no fallback.
            PortUnbound: the adapter or a service it needs is not registered.
            ValidationFailed: arguments that do not fit the adapter.
        """
        what = port_label(mv, spec)
        breaker = self.runner.breaker(mv, spec)
        attempts = spec.retries + 1
        extras = {"event": event}
        last: Outcome | None = None
        tried = 0
        for n in range(1, attempts + 1):
            fn = resolve(self.ctx.adapters, spec.adapter, what)
            call_kwargs = bind(
                fn, instance, args, kwargs, self.ctx.services, extras, what, spec.adapter, protect
            )
            admission = breaker.admit() if breaker is not None else "call"
            if admission == "reject":
                assert breaker is not None
                return await self._breaker_open(
                    mv, instance, spec, args, kwargs, breaker, extras, protect, error=None
                )
            trial = admission == "trial"
            try:
                outcome = await attempt(fn, (instance, *args), call_kwargs, spec.timeout)
            except asyncio.CancelledError:
                if trial and breaker is not None:
                    breaker.release_trial()
                raise
            tried = n
            if outcome.timed_out:
                self.emit(
                    mv,
                    instance.id,
                    "port.timeout",
                    {
                        "port": spec.name,
                        "adapter": spec.adapter,
                        "attempt": n,
                        "attempts": attempts,
                        "timeout": spec.timeout,
                    },
                )
            transition = None
            if breaker is not None:
                transition = breaker.record(
                    outcome.ok, trial=trial, error=None if outcome.ok else outcome.describe()
                )
                self._breaker_event(mv, instance.id, spec, breaker, transition)
            if outcome.ok:
                return await self.complete(mv, instance, spec, outcome.value)
            last = outcome
            log.info("%s attempt %d/%d failed: %s", what, n, attempts, outcome.describe())
            if trial and spec.circuit_breaker and spec.circuit_breaker.fallback:
                # The half-open trial failed: the breaker is open again, serve the fallback.
                assert breaker is not None
                return await self._breaker_open(
                    mv,
                    instance,
                    spec,
                    args,
                    kwargs,
                    breaker,
                    extras,
                    protect,
                    error=self._failure(what, spec, outcome, n, spec.adapter),
                )
            if transition == "opened":
                break  # the call whose failure trips the breaker answers as that failure
            if n < attempts:
                await asyncio.sleep(backoff_delay(n, spec.backoff, self.runner.rng))
        assert last is not None
        return self._give_up(mv, instance, spec, last, tried, spec.adapter)

    def _give_up(
        self, mv: ModelVersion, instance: Model, spec: PortSpec, last: Outcome, n: int, name: str
    ) -> Any:
        error = self._failure(port_label(mv, spec), spec, last, n, name)
        self.emit(
            mv,
            instance.id,
            "port.retry_failed",
            {"port": spec.name, "adapter": name, "attempts": n, "error": error.message},
        )
        raise error

    @staticmethod
    def _failure(
        what: str, spec: PortSpec, outcome: Outcome, attempts: int, adapter: str
    ) -> PortFailed:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        details = {"port": spec.name, "adapter": adapter, "attempts": attempts}
        error: PortFailed
        if outcome.timed_out:
            error = PortTimeout(
                f"{what}: adapter {adapter} timed out after {outcome.timeout:g} s ({tries})",
                **details,
            )
        else:
            error = PortFailed(
                f"{what}: adapter {adapter} failed ({tries}): {outcome.describe()}", **details
            )
            # HTTP callers get the exception's type, not its text (it may quote internals);
            # the full message is logged under the response's error id.
            error.public = f"{what}: adapter {adapter} failed ({tries}): " + (
                type(outcome.error).__name__ if outcome.error is not None else "failed"
            )
        error.__cause__ = outcome.error
        return error

    def _breaker_event(
        self,
        mv: ModelVersion,
        id: str,
        spec: PortSpec,
        breaker: CircuitBreaker,
        transition: str | None,
    ) -> None:
        if transition == "opened":
            cfg = breaker.config
            self.emit(
                mv,
                id,
                "port.breaker_open",
                {
                    "port": spec.name,
                    "error": breaker.last_error,
                    "cooldown": cfg.cooldown,
                    "fallback": cfg.fallback,
                    "times_opened": breaker.times_opened,
                },
            )
            log.info("%s: circuit breaker open (%s)", port_label(mv, spec), breaker.last_error)
        elif transition == "closed":
            self.emit(mv, id, "port.breaker_closed", {"port": spec.name})

    async def _breaker_open(
        self,
        mv: ModelVersion,
        instance: Model,
        spec: PortSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        breaker: CircuitBreaker,
        extras: dict[str, Any],
        protect: bool,
        error: PortFailed | None,
    ) -> Model:
        what = port_label(mv, spec)
        fallback = breaker.config.fallback
        if fallback is None:
            retry_in = breaker.retry_in()
            raise BreakerOpen(
                f"{what}: circuit breaker open; the next call is tried in {retry_in:.1f} s",
                port=spec.name,
                retry_in=round(retry_in, 3),
            )
        fn = resolve(self.ctx.adapters, fallback, f"{what} fallback")
        call_kwargs = bind(
            fn,
            instance,
            args,
            kwargs,
            self.ctx.services,
            {**extras, "error": error},
            f"{what} fallback",
            fallback,
            protect,
        )
        outcome = await attempt(fn, (instance, *args), call_kwargs, spec.timeout)
        if not outcome.ok:
            return self._give_up(mv, instance, spec, outcome, 1, fallback)
        return await self.complete(mv, instance, spec, outcome.value)

    # -- saving the result -----------------------------------------------------------------

    async def changes_of(
        self, instance: Model, spec: PortSpec, value: Any, adapter: str, callback: bool
    ) -> dict[str, Any]:
        """The changes an adapter's result means (through the port's ``callback``)."""
        if callback and spec.callback is not None:
            value = spec.callback(instance, value)
            if inspect.isawaitable(value):
                value = await value
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise TypeError(
                f"adapter {adapter} must return a dict of changes or None, "
                f"got {type(value).__name__}"
            )
        return value

    async def complete(
        self, mv: ModelVersion, instance: Model, spec: PortSpec, value: Any
    ) -> Model:
        """Save the result and the port in ``port_flow`` (one write), emit ``produces``."""
        what = port_label(mv, spec)
        repo = self.ctx.repository(mv.spec.endpoint)

        def append(current: Model) -> dict[str, Any]:
            return {"port_flow": [*current.port_flow, spec.name]}

        problem: str | None = None
        public: str | None = None
        errors: list[dict[str, Any]] = []
        try:
            changes = await self.changes_of(instance, spec, value, spec.adapter, callback=True)
            updated = await commit(
                repo, mv, instance.id, lambda c: {**changes, **append(c)}, hooks=True
            )
        except ValidationFailed as exc:
            problem, errors = f"its changes do not validate: {exc.message}", exc.errors
        except (Conflict, NotFound, PortFailed):
            raise
        except Exception as exc:  # a bad result or a failing callback: the user's code
            problem = f"{type(exc).__name__}: {exc}"
            public = type(exc).__name__
        if problem is not None:
            # The adapter did its work: record the port so the saga compensates it.
            await commit(repo, mv, instance.id, append, hooks=False)
            failed = PortFailed(
                f"{what}: the result of adapter {spec.adapter} could not be saved: {problem}",
                port=spec.name,
                adapter=spec.adapter,
                **({"errors": errors} if errors else {}),
            )
            if public is not None:
                failed.public = (
                    f"{what}: the result of adapter {spec.adapter} could not be saved: {public}"
                )
            raise failed
        if spec.produces:
            self.ctx.events.publish(
                Event(
                    spec.produces,
                    model=mv.name,
                    model_id=instance.id,
                    data_factory=lambda: {"port": spec.name, "model": updated.to_json()},
                )
            )
        return updated

    # -- undo -----------------------------------------------------------------------------

    async def undo(
        self, mv: ModelVersion, instance: Model, spec: PortSpec, adapter: str
    ) -> dict[str, Any]:
        """Run ``spec``'s undo adapter (timeout and retries as the port); returns its changes.

        Raises:
            PortFailed: every attempt failed; PortUnbound: the adapter is not registered.
        """
        what = f"{port_label(mv, spec)} undo"
        attempts = spec.retries + 1
        last: Outcome | None = None
        for n in range(1, attempts + 1):
            fn = resolve(self.ctx.adapters, adapter, what)
            kw = bind(fn, instance, (), {}, self.ctx.services, {"event": None}, what, adapter)
            outcome = await attempt(fn, (instance,), kw, spec.timeout)
            if outcome.ok:
                return await self.changes_of(instance, spec, outcome.value, adapter, callback=False)
            if outcome.timed_out:
                self.emit(
                    mv,
                    instance.id,
                    "port.timeout",
                    {
                        "port": spec.name,
                        "adapter": adapter,
                        "undo": True,
                        "attempt": n,
                        "attempts": attempts,
                        "timeout": spec.timeout,
                    },
                )
            last = outcome
            log.info("%s attempt %d/%d failed: %s", what, n, attempts, outcome.describe())
            if n < attempts:
                await asyncio.sleep(backoff_delay(n, spec.backoff, self.runner.rng))
        assert last is not None
        raise self._failure(what, spec, last, attempts, adapter)
