"""Sagas: compensating an instance's completed ports, last first.

``{model}.undo.started``, then each completed port's ``undo`` adapter in reverse order
of ``port_flow`` (ports without one are dropped), then ``{model}.undo.worked``. The
first failing undo stops the saga with ``{model}.undo.failed``; the ports still to
compensate stay in ``port_flow``. ``compensation`` goes ``None -> "running" ->
"complete" | "incomplete"``.

Every step is one write (the undo's changes and the shorter ``port_flow`` together), so
a saga interrupted by a crash continues where it stopped and never undoes a port twice
that it recorded as undone. The undo in flight at the crash runs again: undo adapters
should be idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..domain.saga import plan_compensation
from ..errors import MicrolibError, NotFound
from .port_call import commit

if TYPE_CHECKING:
    from ..domain.model import Model
    from .ports import PortRunner
    from .registry import ModelVersion

log = logging.getLogger("microlib_kernel.ports")


class SagaRunner:
    """Runs compensations; one at a time per instance (a second request joins the first)."""

    def __init__(self, runner: PortRunner) -> None:
        self.runner = runner
        self.ctx = runner.ctx
        self._running: dict[tuple[str, str], asyncio.Task[Model]] = {}

    def running(self, endpoint: str, id: str) -> bool:
        return (endpoint, id) in self._running

    async def compensate(self, mv: ModelVersion, id: str, reason: str) -> Model:
        """Compensate instance ``id``; returns its state afterwards.

        The saga runs as its own task: a caller that goes away (a closed HTTP request)
        does not stop it halfway.
        """
        key = (mv.spec.endpoint, id)
        task = self._running.get(key)
        if task is None:
            task = self.runner.spawn(self._walk(mv, id, reason))
            self._running[key] = task
            task.add_done_callback(lambda _: self._running.pop(key, None))
        return await asyncio.shield(task)

    async def _walk(self, mv: ModelVersion, id: str, reason: str) -> Model:
        # One owner per instance across hosts (see host/leases.py): a saga runs where
        # the instance's lease is.
        async with self.runner.owning(mv.spec.endpoint, id):
            return await self._steps(mv, id, reason)

    async def _steps(self, mv: ModelVersion, id: str, reason: str) -> Model:
        executor = self.runner.executor
        repo = self.ctx.repository(mv.spec.endpoint)
        current = await repo.get(mv, id)
        if current.compensation != "running":
            current = await commit(repo, mv, id, _set({"compensation": "running"}), hooks=False)
        executor.emit(
            mv, id, "undo.started", {"port_flow": list(current.port_flow), "reason": reason}
        )
        ports = self.runner.ports_of(mv)
        undone: list[str] = []
        for step in plan_compensation(current.port_flow, ports):
            spec = ports[step.port]
            try:
                changes = await executor.undo(mv, current, spec, step.adapter)
                current = await commit(
                    repo, mv, id, _set({**changes, "port_flow": list(step.remaining)}), hooks=True
                )
            except NotFound:
                raise
            except Exception as exc:
                message = exc.message if isinstance(exc, MicrolibError) else f"{exc!r}"
                log.warning("%s %s: undo of %s failed: %s", mv.name, id, step.port, message)
                current = await commit(
                    repo,
                    mv,
                    id,
                    _set({"port_flow": list(step.if_failed), "compensation": "incomplete"}),
                    hooks=False,
                )
                data: dict[str, Any] = {
                    "port": step.port,
                    "undo": step.adapter,
                    "error": message,
                    "remaining": list(step.if_failed),
                }
                executor.emit(mv, id, "undo.failed", data)
                return current
            undone.append(step.port)
        current = await commit(
            repo, mv, id, _set({"port_flow": [], "compensation": "complete"}), hooks=False
        )
        executor.emit(mv, id, "undo.worked", {"undone": undone})
        return current


def _set(values: dict[str, Any]) -> Callable[[Model], dict[str, Any]]:
    """Changes that do not depend on the current state."""
    return lambda _current: values
