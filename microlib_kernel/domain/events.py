"""Domain events and the per-host broker.

Every event is ``{id, name, model, model_id, time, data}``. Patterns are ``fnmatch``
globs over the whole name (``order.*`` matches ``order.undo.started``) or compiled
regular expressions.

Dispatch rule: :meth:`EventBroker.publish` runs on the host's loop. Async handlers run
as tasks on that loop; sync handlers run in a worker thread, so a slow handler never
stalls the loop that serves HTTP. A failing handler is logged and isolated: it never
fails the write or request that emitted the event. :meth:`EventBroker.settle` waits
until every handler started so far (and whatever they started) has finished.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import fnmatch
import inspect
import itertools
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from .ids import new_id
from .secrets import masked

log = logging.getLogger("microlib_kernel.events")

Handler = Callable[["Event"], Any]
Pattern = str | re.Pattern[str]


class Event:
    """A domain event. ``data`` may be computed lazily (the model's JSON is only
    serialised when somebody reads it)."""

    __slots__ = ("_data", "_data_factory", "_id", "model", "model_id", "name", "time")

    def __init__(
        self,
        name: str,
        data: Any = None,
        *,
        model: str | None = None,
        model_id: str | None = None,
        data_factory: Callable[[], Any] | None = None,
        id: str | None = None,
        time: dt.datetime | None = None,
    ) -> None:
        self._id = id
        self.name = name
        self.model = model
        self.model_id = model_id
        self.time = time or dt.datetime.now(dt.UTC)
        self._data = data
        self._data_factory = data_factory

    @property
    def id(self) -> str:
        """A unique id (made when first read)."""
        if self._id is None:
            self._id = new_id()
        return self._id

    @property
    def data(self) -> Any:
        """The event's payload (JSON-able)."""
        if self._data_factory is not None:
            self._data = self._data_factory()
            self._data_factory = None
        return self._data

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-able data (``Secret`` values in ``data`` become ``"***"``)."""
        return {
            "id": self.id,
            "name": self.name,
            "model": self.model,
            "model_id": self.model_id,
            "time": self.time.isoformat(),
            "data": masked(self.data),
        }

    def __repr__(self) -> str:
        return f"Event({self.name!r}, model_id={self.model_id!r})"


class Subscription:
    """A registered handler; :meth:`cancel` removes it."""

    __slots__ = ("_broker", "handler", "key", "owner", "pattern", "seq")

    def __init__(
        self,
        broker: EventBroker,
        pattern: Pattern,
        handler: Handler,
        key: Any,
        owner: Any,
        seq: int,
    ):
        self._broker = broker
        self.pattern = pattern
        self.handler = handler
        self.key = key
        self.owner = owner
        self.seq = seq

    def matches(self, name: str) -> bool:
        """Whether this subscription receives events called ``name``."""
        if isinstance(self.pattern, re.Pattern):
            return self.pattern.search(name) is not None
        return fnmatch.fnmatchcase(name, self.pattern)

    def cancel(self) -> None:
        """Stop receiving events (idempotent)."""
        self._broker.off(self)

    def __repr__(self) -> str:
        name = getattr(self.handler, "__qualname__", repr(self.handler))
        return f"Subscription({self.pattern!r} -> {name})"


class EventBroker:
    """One broker per host: subscriptions, dispatch, a ring of recent events, streams.

    Args:
        history: how many recent events :meth:`recent` can return.
    """

    def __init__(self, history: int = 1000) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, Subscription] = {}
        self._by_key: dict[Any, Subscription] = {}
        self._match_cache: dict[str, tuple[Subscription, ...]] = {}
        self._seq = itertools.count()
        self._recent: collections.deque[Event] = collections.deque(maxlen=history)
        self._streams: set[_Stream] = set()
        self._pending: set[asyncio.Future[Any]] = set()
        self._taps: list[Callable[[Event], None]] = []

    # -- subscriptions -------------------------------------------------------------

    def on(
        self, pattern: Pattern, handler: Handler, *, key: Any = None, owner: Any = None
    ) -> Subscription:
        """Subscribe ``handler`` to events whose name matches ``pattern``.

        Args:
            pattern: an ``fnmatch`` glob over the whole name, or a compiled regex.
            handler: ``handler(event)``, sync or async.
            key: re-subscribing with the same key replaces the earlier subscription
                (this is how re-running a notebook cell avoids duplicate handlers).
            owner: anything; :meth:`off_owner` removes all subscriptions of an owner.
        """
        if not callable(handler):
            raise TypeError(f"event handler must be callable, got {handler!r}")
        if not isinstance(pattern, str | re.Pattern):
            raise TypeError(f"event pattern must be a string or a compiled regex, got {pattern!r}")
        with self._lock:
            if key is not None and key in self._by_key:
                self._remove(self._by_key[key])
            sub = Subscription(self, pattern, handler, key, owner, next(self._seq))
            self._subs[sub.seq] = sub
            if key is not None:
                self._by_key[key] = sub
            self._match_cache.clear()
        return sub

    def off(self, subscription: Subscription) -> None:
        """Remove one subscription."""
        with self._lock:
            self._remove(subscription)

    def off_owner(self, owner: Any) -> int:
        """Remove every subscription of ``owner``; returns how many."""
        with self._lock:
            subs = [s for s in self._subs.values() if s.owner == owner]
            for s in subs:
                self._remove(s)
            return len(subs)

    def subscriptions(self, owner: Any = None) -> list[Subscription]:
        """Current subscriptions (of one owner, if given)."""
        with self._lock:
            return [s for s in self._subs.values() if owner is None or s.owner == owner]

    def _remove(self, sub: Subscription) -> None:
        if self._subs.pop(sub.seq, None) is not None:
            if sub.key is not None and self._by_key.get(sub.key) is sub:
                del self._by_key[sub.key]
            self._match_cache.clear()

    def _matching(self, name: str) -> tuple[Subscription, ...]:
        found = self._match_cache.get(name)
        if found is None:
            with self._lock:
                found = tuple(s for s in self._subs.values() if s.matches(name))
                self._match_cache[name] = found
        return found

    def tap(self, fn: Callable[[Event], None]) -> None:
        """Call ``fn(event)`` synchronously for every event (forwarders, recorders)."""
        self._taps.append(fn)

    # -- dispatch ------------------------------------------------------------------

    def publish(self, event: Event) -> Event:
        """Record ``event`` and start its handlers. Must run on the host's loop."""
        self.publish_many((event,))
        return event

    def publish_many(self, events: Sequence[Event]) -> None:
        """:meth:`publish` of each event, in order, with the lookups done once per name
        (``create_many`` publishes one event per row). Must run on the host's loop."""
        self._recent.extend(events)
        taps, streams = self._taps, tuple(self._streams)
        if taps or streams:
            for event in events:
                for tap in taps:
                    try:
                        tap(event)
                    except Exception:
                        log.exception("event tap failed for %s", event.name)
                for stream in streams:
                    stream.offer(event)
        matching: dict[str, tuple[Subscription, ...]] = {}
        loop: asyncio.AbstractEventLoop | None = None
        for event in events:
            subs = matching.get(event.name)
            if subs is None:
                subs = matching[event.name] = self._matching(event.name)
            if subs:
                loop = loop or asyncio.get_running_loop()
                for sub in subs:
                    self._track(loop, sub, event)

    def publish_each(self, name: str, count: int, make: Callable[[int], Event]) -> None:
        """Publish ``count`` events named ``name`` in order, the ``i``-th made by ``make(i)``.

        When no tap, stream or subscriber sees events of that name, only the last
        ``history`` are made: the others would only pass through the ring of recent
        events, which keeps that many (a ``create_many`` of 100,000 rows made 100,000
        events for 1,000 places, ~0.12 s). Must run on the host's loop.
        """
        kept = self._recent.maxlen
        if kept is not None and not (self._taps or self._streams or self._matching(name)):
            # Decided once: a subscriber that arrives while the events are made gets
            # none of them (as if it had subscribed after the publish), never a tail.
            self._recent.extend(make(i) for i in range(max(0, count - kept), count))
            return
        self.publish_many([make(i) for i in range(count)])

    def _track(self, loop: asyncio.AbstractEventLoop, sub: Subscription, event: Event) -> None:
        handler = sub.handler
        fut: asyncio.Future[Any]
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
        ):
            fut = loop.create_task(_guard_async(sub, event))
        else:
            fut = loop.run_in_executor(None, _guard_sync, sub, event)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    async def settle(self, timeout: float | None = 10.0) -> None:
        """Wait until no handler is running, including handlers those handlers caused.

        Raises:
            TimeoutError: handlers were still running after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._pending:
                await asyncio.gather(*tuple(self._pending), return_exceptions=True)
                # Handlers may schedule more work after their own await points.
                await asyncio.sleep(0)

    @property
    def busy(self) -> bool:
        """Whether handlers are running."""
        return bool(self._pending)

    # -- history and streams --------------------------------------------------------

    def recent(self, pattern: Pattern | None = None, n: int = 50) -> list[Event]:
        """The last ``n`` events (matching ``pattern``), oldest first."""
        events = list(self._recent)
        if pattern is not None:
            probe = Subscription(self, pattern, print, None, None, -1)
            events = [e for e in events if probe.matches(e.name)]
        return events[-n:] if n else events

    @contextlib.asynccontextmanager
    async def stream(self, pattern: Pattern = "*", size: int = 1000) -> AsyncIterator[_Stream]:
        """An async iterator of new events matching ``pattern`` (must run on the host loop).

        A consumer that falls ``size`` events behind loses the oldest ones; the stream
        counts them in ``dropped``.
        """
        stream = _Stream(self, pattern, size, asyncio.get_running_loop())
        self._streams.add(stream)
        try:
            yield stream
        finally:
            self._streams.discard(stream)


async def _guard_async(sub: Subscription, event: Event) -> None:
    try:
        result: Any = sub.handler(event)
        if isinstance(result, Awaitable):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("event handler %r failed on %s", sub, event.name)


def _guard_sync(sub: Subscription, event: Event) -> None:
    try:
        sub.handler(event)
    except Exception:
        log.exception("event handler %r failed on %s", sub, event.name)


class _Stream:
    """A bounded queue of events for one consumer (SSE, dashboard)."""

    def __init__(self, broker: EventBroker, pattern: Pattern, size: int, loop: Any) -> None:
        self._probe = Subscription(broker, pattern, print, None, None, -1)
        self._queue: collections.deque[Event] = collections.deque(maxlen=size)
        self._ready = asyncio.Event()
        self._loop = loop
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if not self._probe.matches(event.name):
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._ready.set()

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def next(self, timeout: float | None) -> Event | None:
        """The next event, or ``None`` after ``timeout`` seconds (for keep-alives)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None
