"""The host's own asyncio loop, in a daemon thread.

Rule (enforced here): every piece of host state -- the registry, the repositories,
the cache, the broker -- is touched only on this loop. Code on any other thread or
loop (a notebook cell, a test, a script, a sync handler) reaches it by hopping onto
the loop: :meth:`HostLoop.call` from async code, :meth:`HostLoop.run` from sync code.
Code already on the loop runs directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import MicrolibError, ServiceUnavailable

T = TypeVar("T")


class HostLoop:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str = "microlib-host") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._outbox: list[tuple[Any, ...]] = []
        self._outbox_lock = threading.Lock()
        self._waking: set[asyncio.AbstractEventLoop] = set()
        self._replies: dict[asyncio.AbstractEventLoop, list[tuple[Any, ...]]] = {}
        self.closed = False
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def in_loop(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.get_ident() == self._thread.ident

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it (from sync code on another thread).

        Raises:
            MicrolibError: called from the loop itself (it would deadlock).
        """
        if self.in_loop():
            coro.close()
            raise MicrolibError(
                "this host method is synchronous and cannot run on the host's own loop "
                "(from an async handler or adapter); use its async form or a thread"
            )
        if self.closed:
            coro.close()
            raise ServiceUnavailable("the host is closed")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` on the host loop from any loop.

        Calls made in the same tick of the caller's loop (``asyncio.gather`` of many
        creates) cross the thread boundary together: one wake-up of the host loop per
        batch and one wake-up of the caller per batch of results, instead of two
        thread-safe calls per operation.
        """
        current = asyncio.get_running_loop()
        if current is self.loop:
            return await fn(*args, **kwargs)
        return await self._send(current, ("call", fn, (args, kwargs)))

    async def call_batched(
        self, batch_fn: Callable[[list[Any]], Awaitable[list[Any]]], item: Any
    ) -> Any:
        """Run ``item`` through ``batch_fn`` together with the same tick's other items.

        ``batch_fn(items)`` runs once on the host loop for every item sent in one tick
        of a caller's loop and returns one outcome per item, in order: a value, or an
        exception instance (raised to that item's caller alone).
        """
        current = asyncio.get_running_loop()
        if current is self.loop:
            outcome = (await batch_fn([item]))[0]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        return await self._send(current, ("batch", batch_fn, item))

    def submit_batched(
        self,
        batch_fn: Callable[[list[Any]], Awaitable[list[Any]]],
        item: Any,
        caller: asyncio.AbstractEventLoop,
    ) -> asyncio.Future[Any]:
        """:meth:`call_batched` from another loop, as a future of ``caller`` (not a
        coroutine): ``asyncio.gather`` of many of them creates no task per call."""
        return self._send(caller, ("batch", batch_fn, item))

    def _send(
        self, caller: asyncio.AbstractEventLoop, request: tuple[Any, ...]
    ) -> asyncio.Future[Any]:
        if self.closed:
            raise ServiceUnavailable("the host is closed")
        result: asyncio.Future[Any] = caller.create_future()
        with self._outbox_lock:
            self._outbox.append((*request, result, caller))
            first = caller not in self._waking
            self._waking.add(caller)
        if first:
            # Wake the host at the end of the caller's current tick, not now: the other
            # calls of this tick (a gather's tasks all take their first step in it) then
            # cross in the same batch, instead of the host draining a partial one.
            caller.call_soon(self._wake, caller)
        return result

    def _wake(self, caller: asyncio.AbstractEventLoop) -> None:
        with self._outbox_lock:
            self._waking.discard(caller)
        try:
            self.loop.call_soon_threadsafe(self._drain_outbox)
        except RuntimeError:  # the host loop is closed: fail what waits, never hang
            with self._outbox_lock:
                batch, self._outbox = self._outbox, []
            for *_, result, _caller in batch:
                if not result.done():
                    result.set_exception(ServiceUnavailable("the host is closed"))

    def _drain_outbox(self) -> None:
        with self._outbox_lock:
            batch, self._outbox = self._outbox, []
        groups: dict[Any, list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop]]] = {}
        for kind, fn, payload, result, caller in batch:
            if kind == "call":
                args, kwargs = payload
                task = self.loop.create_task(_invoke(fn, args, kwargs))
                task.add_done_callback(
                    functools.partial(self._reply_one, result=result, caller=caller)
                )
            else:
                groups.setdefault(fn, []).append((payload, result, caller))
        for batch_fn, members in groups.items():
            task = self.loop.create_task(batch_fn([m[0] for m in members]))
            task.add_done_callback(functools.partial(self._reply_many, members=members))

    def _reply_one(
        self,
        task: asyncio.Task[Any],
        *,
        result: asyncio.Future[Any],
        caller: asyncio.AbstractEventLoop,
    ) -> None:
        self._queue_reply(caller, result, _outcome(task))

    def _reply_many(
        self,
        task: asyncio.Task[Any],
        *,
        members: list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop]],
    ) -> None:
        whole = _outcome(task)
        if isinstance(whole, _Failure):
            outcomes: list[Any] = [whole] * len(members)
        else:
            outcomes = [_Failure(o) if isinstance(o, BaseException) else o for o in whole]
        for (_, result, caller), outcome in zip(members, outcomes, strict=True):
            self._queue_reply(caller, result, outcome)

    def _queue_reply(
        self, caller: asyncio.AbstractEventLoop, result: asyncio.Future[Any], outcome: Any
    ) -> None:
        replies = self._replies.setdefault(caller, [])
        replies.append((result, outcome))
        if len(replies) == 1:
            # Flush at the end of this host-loop tick, so results finished together
            # travel together.
            self.loop.call_soon(self._flush_replies, caller)

    def _flush_replies(self, caller: asyncio.AbstractEventLoop) -> None:
        replies = self._replies.pop(caller, [])
        if not replies:
            return
        try:
            caller.call_soon_threadsafe(_deliver, replies)
        except RuntimeError:
            pass  # the caller's loop is gone; nobody waits for these results

    def stop(self) -> None:
        """Stop the loop and join its thread (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self.in_loop():
            self.loop.stop()
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class _Failure:
    """An exception travelling back to the caller's loop."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _outcome(task: asyncio.Task[Any]) -> Any:
    if task.cancelled():
        return _Failure(asyncio.CancelledError())
    exc = task.exception()
    return _Failure(exc) if exc is not None else task.result()


def _deliver(replies: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for result, outcome in replies:
        if result.done():
            continue  # the caller gave up (cancelled)
        if isinstance(outcome, _Failure):
            if isinstance(outcome.exc, asyncio.CancelledError):
                result.cancel()
            else:
                result.set_exception(outcome.exc)
        else:
            result.set_result(outcome)


async def _invoke(
    fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    return await fn(*args, **kwargs)
