"""Keeping several hosts on one shared datasource in step, over the bus.

A :class:`ClusterLink` joins a host to the bus (``MICROLIB_BUS``):

* **cache coherence**: every committed write publishes ``{table, id, revision}`` on the
  ``changes`` topic; every other host evicts its cached copy and remembers the revision
  as a floor, so a read that raced the write can never put the older revision back
  (an older revision never overwrites a newer one). While the bus is down a host
  cannot hear about writes elsewhere, so it stops trusting its cache (every read goes
  to the datasource) and says so in ``/health``; when the bus returns it starts from an
  empty cache. A host that fell so far behind that the stream discarded messages it
  never read (the bus reports a *gap*) also drops its whole cache, at once, and
  re-reads the shared deployment log (a deploy announcement may have been among them).
* **event forwarding**: local events whose names match ``bus_forward`` go out on the
  ``events`` topic; events from other hosts matching ``bus_accept`` are published on the
  local broker with their original id, so ports and listeners here consume events raised
  there. Delivery is at least once; duplicates are dropped by event id.

Only hosts on a datasource that several processes share (PostgreSQL) need this; on the
embedded DuckDB default one process owns the file.
"""

from __future__ import annotations

import collections
import datetime as dt
import fnmatch
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..bus.base import Bus, BusMessage
from ..domain.events import Event
from ..domain.ids import new_id

if TYPE_CHECKING:
    from .context import HostContext
    from .repository import Change

#: ``catch_up(seq)``: apply the shared deployment log up to ``seq`` (``None``: all of it).
CatchUp = Callable[[int | None], Coroutine[Any, Any, None]]
#: ``spawn(coro)``: run a coroutine as a background task the host awaits at close.
Spawn = Callable[[Coroutine[Any, Any, Any]], Any]

log = logging.getLogger("microlib_kernel.cluster")


def default_node_id() -> str:
    """``hostname:pid:xxxx``: unique per process, readable in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[-4:]}"


def patterns(text: str) -> tuple[str, ...]:
    """``"order.*, payment.*"`` as a tuple of glob patterns (empty items dropped)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


class SeenIds:
    """The last ``size`` ids seen (dedup for at-least-once delivery)."""

    def __init__(self, size: int = 50_000) -> None:
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.size = size

    def add(self, id: str) -> bool:
        """Record ``id``; ``False`` if it was already there."""
        if id in self._ids:
            return False
        self._ids[id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, id: object) -> bool:
        return id in self._ids


class ClusterLink:
    """Joins one host to the bus (see the module docstring).

    Args:
        ctx: the host's context (its cache, events, change hook and node are used).
        bus: a bus, not yet opened.
        catch_up: applies the shared deployment log (after a deploy elsewhere).
        spawn: runs a background task (catching up must not hold up deliveries).
        forward: glob patterns of local event names sent to the other hosts.
        accept: glob patterns of remote event names published here.
    """

    def __init__(
        self,
        ctx: HostContext,
        bus: Bus,
        *,
        catch_up: CatchUp,
        spawn: Spawn,
        forward: tuple[str, ...] = (),
        accept: tuple[str, ...] = ("*",),
    ) -> None:
        self.ctx = ctx
        self.bus = bus
        self.node = ctx.node
        self._catch_up = catch_up
        self._spawn = spawn
        self.forward = forward
        self.accept = accept
        self._seen = SeenIds()
        self.forwarded = 0
        self.imported = 0
        self.duplicates = 0
        self.invalidations = 0
        self.deploys_announced = 0
        self.deploys_applied = 0

    async def open(self) -> None:
        """Subscribe and connect (an unreachable bus means read-through, not failure)."""
        self.bus.subscribe("changes", self._on_remote_change)
        self.bus.subscribe("events", self._on_remote_event)
        self.bus.subscribe("deploys", self._on_remote_deploy)
        self.bus.on_state(self._on_bus_state)
        self.bus.on_gap(self._on_bus_gap)
        self.ctx.repositories.on_change(self._on_local_change)
        self.ctx.events.tap(self._on_local_event)
        # Until the bus says it is up, writes elsewhere are invisible to us.
        self.ctx.cache.suspend()
        await self.bus.open()
        if self.bus.connected:
            self.ctx.cache.resume()

    async def close(self) -> None:
        await self.bus.close()

    @property
    def cache_trusted(self) -> bool:
        """Whether reads may be answered from the cache (the bus is up)."""
        return self.bus.connected

    def describe(self) -> dict[str, Any]:
        """The link's state for ``/health``."""
        return {
            **self.bus.describe(),
            "node": self.node,
            "cache": "trusted" if self.cache_trusted else "read-through",
            "forward": list(self.forward),
            "events_forwarded": self.forwarded,
            "events_received": self.imported,
            "duplicates_dropped": self.duplicates,
            "invalidations": self.invalidations,
            "deploys_announced": self.deploys_announced,
            "deploys_heard": self.deploys_applied,
        }

    # -- outgoing ------------------------------------------------------------------------

    def _on_local_change(self, change: Change) -> None:
        record = change.record
        revision = record.get("revision") if record is not None else None
        self.bus.publish(
            "changes",
            new_id(),
            self.node,
            {"table": change.table, "id": change.id, "revision": revision,
             "deleted": record is None},
        )  # fmt: skip

    def _on_local_event(self, event: Event) -> None:
        if event.id in self._seen or not self._matches(event.name, self.forward):
            return  # came from another host, or not configured to leave this one
        self._seen.add(event.id)
        self.forwarded += 1
        self.bus.publish("events", event.id, self.node, event.to_dict())

    def announce_deploy(self, seq: int) -> None:
        """Tell the other hosts the shared deployment log grew to ``seq``."""
        self.deploys_announced += 1
        self.bus.publish("deploys", new_id(), self.node, {"seq": seq})

    # -- incoming ------------------------------------------------------------------------

    async def _on_remote_deploy(self, message: BusMessage) -> None:
        if message.origin == self.node:
            return
        seq = message.data.get("seq")
        if not isinstance(seq, int):
            log.warning("ignored a deploy message without seq: %s", message.id)
            return
        self.deploys_applied += 1
        # Not awaited inline: catching up runs user code and takes the deploy lock,
        # which must not hold up the delivery of cache invalidations.
        self._spawn(self._catch_up(seq))

    async def _on_remote_change(self, message: BusMessage) -> None:
        if message.origin == self.node:
            return
        data = message.data
        if data.get("all"):
            # The sender lost invalidations (its outbox overflowed): nothing cached here
            # can be trusted to be current.
            self.ctx.cache.resume()
            return
        table, id = data.get("table"), data.get("id")
        if not isinstance(table, str) or not isinstance(id, str):
            log.warning("ignored a change message without table/id: %s", message.id)
            return
        revision = data.get("revision")
        if data.get("deleted") or not isinstance(revision, int):
            revision = None
        self.invalidations += 1
        self.ctx.cache.invalidate(table, id, revision)

    async def _on_remote_event(self, message: BusMessage) -> None:
        if message.origin == self.node:
            return
        if not self._seen.add(message.id):
            self.duplicates += 1
            return
        body = message.data
        name = body.get("name")
        if not isinstance(name, str) or not self._matches(name, self.accept):
            return
        try:
            time = dt.datetime.fromisoformat(str(body.get("time")))
        except ValueError:
            time = None
        self.imported += 1
        self.ctx.events.publish(
            Event(
                name,
                body.get("data"),
                model=body.get("model"),
                model_id=body.get("model_id"),
                id=message.id,
                time=time,
            )
        )

    def _on_bus_state(self, connected: bool) -> None:
        if connected:
            # Writes made while we were deaf are in the datasource, not in our cache;
            # deploys made meanwhile are in the shared log.
            self.ctx.cache.resume()
            if self.bus.lost:
                self.bus.lost = False
                self.bus.publish("changes", new_id(), self.node, {"all": True})
            self._spawn(self._catch_up(None))
        else:
            self.ctx.cache.suspend()

    def _on_bus_gap(self) -> None:
        # Invalidations we never read may be among the discarded messages: no cached
        # copy can be trusted. The floors stay (they are still true); deploys are in
        # the shared log. Forwarded events that were discarded are gone (logged).
        self.ctx.cache.clear()
        self._spawn(self._catch_up(None))

    @staticmethod
    def _matches(name: str, globs: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, g) for g in globs)


def join_bus(ctx: HostContext, *, catch_up: CatchUp, spawn: Spawn) -> ClusterLink:
    """Join the bus the settings name (``bus``, ``bus_cluster``, ``bus_forward``,
    ``bus_accept``); waits up to 30 s for the link to open."""
    from ..bus import create_bus

    s = ctx.settings
    link = ClusterLink(
        ctx,
        create_bus(s.bus, cluster=s.bus_cluster),
        catch_up=catch_up,
        spawn=spawn,
        forward=patterns(s.bus_forward),
        accept=patterns(s.bus_accept),
    )
    ctx.loop.run(link.open(), timeout=30)
    return link
