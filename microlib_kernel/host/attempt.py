"""One attempt of an adapter call, bounded by a timeout whose expiry cancels it.

Async adapters run as a task on the host loop; a timeout cancels the task. Sync adapters
run in a daemon thread of their own so they never stall the loop (and the HTTP API it
serves); a thread cannot be interrupted, so on timeout its eventual result is discarded. Either
way a timed-out attempt is over for the caller: whatever it returns later is ignored.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("microlib_kernel.ports")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: a value, an error, or a timeout."""

    ok: bool
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    timeout: float | None = None

    def describe(self) -> str:
        """One line for messages and events."""
        if self.ok:
            return "ok"
        if self.timed_out:
            return f"timed out after {self.timeout:g} s"
        err = self.error
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (functions, methods, callable objects)."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - async callable objects
    )


def _in_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``fn`` in a daemon thread of its own; returns a future of its result.

    Not the loop's shared pool: an adapter that never returns must neither use up the
    threads other work needs (reads, sync event handlers) nor keep the process from
    exiting.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return  # abandoned (timed out or cancelled): the late result is discarded
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            result = ctx.run(fn, *args, **kwargs)
        except BaseException as exc:
            outcome = (False, exc)
        else:
            outcome = (True, result)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    name = getattr(fn, "__qualname__", "adapter")
    threading.Thread(target=work, name=f"microlib-adapter {name}", daemon=True).start()
    return future


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if is_async(fn):
        return await fn(*args, **kwargs)
    result = await _in_thread(fn, args, kwargs)
    if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
        result = await result
    return result


def _discard(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("a timed-out adapter call ended later with %r (ignored)", task.exception())


async def attempt(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    timeout: float | None,
) -> Outcome:
    """Call ``fn(*args, **kwargs)`` once, giving up after ``timeout`` seconds.

    Never raises for the adapter's sake (its failure is the outcome); a cancellation of
    the caller (host shutdown) cancels the adapter and propagates.
    """
    task = asyncio.ensure_future(_invoke(fn, args, kwargs))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_discard)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_discard)
        return Outcome(False, timed_out=True, timeout=timeout)
    if task.cancelled():
        return Outcome(False, error=asyncio.CancelledError("the adapter call was cancelled"))
    error = task.exception()
    if error is not None:
        return Outcome(False, error=error)
    return Outcome(True, task.result())
