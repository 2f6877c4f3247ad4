"""The bus port: publish a message on a topic, receive every host's messages.

Delivery is at least once: a message may arrive twice (after a reconnect, or when an
outbox resends), so receivers dedupe by :attr:`BusMessage.id`. Every adapter keeps an
*outbox*: a publish while the bus is down is queued and sent, in order, when it returns,
so no acknowledged write's invalidation is lost, only delayed (while the bus is down,
hosts do not trust their caches, see :mod:`microlib_kernel.host.cluster`).

Two ways a message can still be lost, and how a host learns of each:

* *sending*: the outbox overflowed during a long outage; :attr:`Bus.lost` is set and the
  host tells every other host to drop its whole cache once it is back.
* *receiving*: the stream discarded messages before this host read them (a Redis
  stream's ``MAXLEN``, a JetStream stream's limits) because it fell too far behind;
  the adapter notices the gap and calls the :meth:`Bus.on_gap` listeners, so the host
  drops its own cache and re-reads the deployment log.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MicrolibError

log = logging.getLogger("microlib_kernel.bus")

#: Topics the host uses; adapters map them onto subjects / stream entries.
TOPICS = ("changes", "events", "deploys")


class BusUnavailable(MicrolibError):
    """The bus cannot be reached (yet); the message stays in the outbox."""


@dataclass(frozen=True)
class BusMessage:
    """One message: ``data`` is JSON-able; ``origin`` is the sending node's id."""

    topic: str
    id: str
    origin: str
    data: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The message as compact JSON bytes."""
        return json.dumps(
            {"topic": self.topic, "id": self.id, "origin": self.origin, "data": self.data},
            separators=(",", ":"),
            default=str,
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> BusMessage:
        """Parse :meth:`encode`'s output.

        Raises:
            ValueError: not a bus message (a foreign publisher on our subjects).
        """
        body = json.loads(raw)
        if not isinstance(body, dict) or not isinstance(body.get("data", {}), dict):
            raise ValueError("a bus message is a JSON object with a data object")
        try:
            return cls(str(body["topic"]), str(body["id"]), str(body["origin"]), body["data"])
        except KeyError as exc:
            raise ValueError(f"a bus message needs {exc.args[0]!r}") from None


Handler = Callable[[BusMessage], Awaitable[None]]
StateListener = Callable[[bool], None]
GapListener = Callable[[], None]


class Bus(abc.ABC):
    """A connection to the bus, used from one asyncio loop (the host's).

    Subclasses implement :meth:`_connect`, :meth:`_send`, :meth:`_listen` and
    :meth:`_disconnect`; this base class owns the outbox, the handlers and the
    connected/disconnected state that hosts watch.
    """

    scheme = ""

    def __init__(self, url: str, *, cluster: str = "default", outbox_limit: int = 100_000) -> None:
        self.url = url
        self.cluster = cluster
        self._handlers: dict[str, list[Handler]] = collections.defaultdict(list)
        self._listeners: list[StateListener] = []
        self._gap_listeners: list[GapListener] = []
        self._outbox: collections.deque[BusMessage] = collections.deque()
        self._outbox_limit = outbox_limit
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._closed = False
        self.sent = 0
        self.received = 0
        self.dropped = 0
        #: Messages were dropped from the outbox since the last reconnect.
        self.lost = False
        #: Times the stream discarded messages before this node read them.
        self.gaps = 0

    # -- what hosts use ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether messages flow right now."""
        return self._connected and not self._closed

    @property
    def backlog(self) -> int:
        """Messages waiting in the outbox."""
        return len(self._outbox)

    def on_state(self, listener: StateListener) -> None:
        """Call ``listener(connected)`` whenever the connection goes down or comes back."""
        self._listeners.append(listener)

    def on_gap(self, listener: GapListener) -> None:
        """Call ``listener()`` when messages were discarded before this node read them."""
        self._gap_listeners.append(listener)

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Deliver every message on ``topic`` (from every node, this one included)."""
        if topic not in TOPICS:
            raise ValueError(f"unknown bus topic {topic!r}; topics are {', '.join(TOPICS)}")
        self._handlers[topic].append(handler)

    async def open(self) -> None:
        """Connect (or keep trying in the background) and start listening.

        Never raises for an unreachable bus: the host starts, reports the bus as down in
        ``/health`` and reads through its cache until the bus is reachable.
        """
        self._loop = asyncio.get_running_loop()
        self._sender = self._loop.create_task(self._send_loop())
        try:
            await self._connect()
        except Exception as exc:  # any failure means "down for now"
            log.warning("bus %s is not reachable yet: %s", redact(self.url), exc)
            self._set_connected(False)
            self._retry = asyncio.get_running_loop().create_task(self._connect_later())

    async def _connect_later(self, wait: float = 1.0) -> None:
        """Keep trying to connect (the bus was down when the host started)."""
        while not self._closed:
            await asyncio.sleep(wait)
            try:
                await self._connect()
                return
            except Exception as exc:
                log.debug("bus %s still unreachable: %s", redact(self.url), exc)

    def publish(self, topic: str, id: str, origin: str, data: dict[str, Any]) -> None:
        """Queue a message; the sender task delivers it (in order) as soon as it can."""
        if self._closed:
            return
        if len(self._outbox) >= self._outbox_limit:
            # A bus down for very long: the oldest messages go. The other hosts may
            # still trust their caches (only our link may be down), so once we are back
            # they are told to drop everything (see ``lost``).
            self._outbox.popleft()
            self.dropped += 1
            self.lost = True
        self._outbox.append(BusMessage(topic, id, origin, data))
        self._wake_sender()

    def _wake_sender(self) -> None:
        # publish() may be called from any thread (a sync handler, a notebook cell);
        # asyncio.Event is not thread-safe, so wake the sender on its own loop.
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the outbox is empty; ``False`` if it still was after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._outbox:
                    await asyncio.sleep(0.005)
        return not self._outbox

    async def close(self) -> None:
        """Send what can still be sent (briefly), then disconnect."""
        if self._closed:
            return
        if self._connected:
            await self.flush(2.0)
        self._closed = True
        for task in (self._sender, self._retry, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(Exception):
            await self._disconnect()

    def describe(self) -> dict[str, Any]:
        """What ``/health`` shows about the bus."""
        return {
            "url": redact(self.url),
            "connected": self.connected,
            "backlog": self.backlog,
            "sent": self.sent,
            "received": self.received,
            "dropped": self.dropped,
            "gaps": self.gaps,
        }

    # -- for adapters --------------------------------------------------------------------

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        if connected:
            log.info("bus %s is up", redact(self.url))
        else:
            log.warning("bus %s is DOWN: caches read through until it returns", redact(self.url))
        if connected:
            self._wake_sender()
        for listener in self._listeners:
            try:
                listener(connected)
            except Exception:
                log.exception("bus state listener failed")

    def _gap(self, why: str) -> None:
        """Messages this node never read are gone from the stream: tell the listeners."""
        self.gaps += 1
        log.warning("bus %s: %s; messages were missed, caches are dropped", redact(self.url), why)
        for listener in self._gap_listeners:
            try:
                listener()
            except Exception:
                log.exception("bus gap listener failed")

    async def _deliver(self, raw: bytes | str) -> None:
        """Hand one received message to the topic's handlers (bad messages are logged)."""
        try:
            message = BusMessage.decode(raw)
        except ValueError as exc:
            log.warning("ignored a malformed bus message: %s", exc)
            return
        self.received += 1
        for handler in self._handlers.get(message.topic, ()):
            try:
                await handler(message)
            except Exception:
                log.exception("bus handler failed on %s %s", message.topic, message.id)

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox and self._connected and not self._closed:
                message = self._outbox[0]
                try:
                    await self._send(message)
                except Exception as exc:  # stays queued; resent when the bus takes it
                    log.warning("bus publish failed (kept in the outbox): %s", exc)
                    self._set_connected(False)
                    self._probe = asyncio.get_running_loop().create_task(self._probe_later())
                    break
                if self._outbox and self._outbox[0] is message:
                    self._outbox.popleft()  # (unless the limit dropped it meanwhile)
                self.sent += 1

    async def _probe_later(self, wait: float = 0.5) -> None:
        """After a failed publish on a live connection, try again until the bus takes it.

        A publish can fail while the connection stays up (a JetStream timeout): no
        reconnect event will come, so this is what brings the link back.
        """
        while not self._closed and not self._connected:
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
            if not self._outbox or not await self._alive():
                continue
            try:
                await self._send(self._outbox[0])
            except Exception as exc:
                log.debug("bus %s still refuses publishes: %s", redact(self.url), exc)
                continue
            self._outbox.popleft()
            self.sent += 1
            self._set_connected(True)

    async def _alive(self) -> bool:
        """Whether the connection itself is up (adapters with one say so)."""
        return False

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Connect and start delivering messages to :meth:`_deliver`; raise if unreachable."""

    @abc.abstractmethod
    async def _send(self, message: BusMessage) -> None:
        """Send one message durably (return only once the bus accepted it)."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Stop listening and close the connection."""


def redact(url: str) -> str:
    """``url`` without a password (for logs and ``/health``)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, where = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{where}" if ":" in creds else f"{scheme}://{user}@{where}"
