"""``nats://host:4222``: NATS JetStream (nats-py).

One stream per cluster, ``MICROLIB_<CLUSTER>``, on subjects ``microlib.<cluster>.<topic>``,
kept for a bounded time (``max_age``) so a host that reconnects catches up on what it
missed. Each message carries a ``Nats-Msg-Id`` header, so JetStream drops the duplicate
when the outbox resends a message it had in fact accepted. Each host reads the whole
stream (every topic) with one *ordered consumer* starting at new messages; after a
reconnect it is re-created from the last stream sequence seen, so nothing in between
is skipped (at least once).

Unless the stream discarded it first: a host away (or stuck) for longer than
``max_age`` would resume at the oldest message left and silently miss the ones in
between. One consumer over the whole stream makes the stream sequence contiguous for
it, so a gap is exact: a delivered message whose sequence is past the next one
expected, or, when re-subscribing, a stream whose first sequence is past it, means
messages were discarded unread, and the bus reports a gap (:meth:`Bus.on_gap`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from .base import Bus, BusMessage

log = logging.getLogger("microlib_kernel.bus")


class NatsBus(Bus):
    """The bus on NATS JetStream."""

    scheme = "nats"

    def __init__(self, url: str, *, cluster: str = "default", max_age: float = 3600.0) -> None:
        super().__init__(url, cluster=cluster)
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", cluster)
        self.stream = f"MICROLIB_{safe.upper()}"
        self.prefix = f"microlib.{safe}"
        self.max_age = max_age
        self._nc: Any = None
        self._js: Any = None
        self._subs: list[Any] = []
        #: The last stream sequence delivered (``None``: not subscribed yet).
        self._seen: int | None = None

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig

        async def disconnected() -> None:
            self._set_connected(False)

        async def reconnected() -> None:
            # A restarted server has forgotten our consumers: subscribe again from the
            # last message each topic saw, and only then trust the caches again.
            try:
                await self._subscribe()
            except Exception as exc:
                log.warning("nats: re-subscribing after a reconnect failed: %s", exc)
                return
            self._set_connected(True)

        async def error(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        # The first connect gives up quickly (the host starts and retries in the
        # background); once connected, reconnect forever: a NATS restart must not need
        # a host restart.
        nc = await nats.connect(
            self.url,
            name=f"microlib-{self.cluster}",
            allow_reconnect=True,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        try:
            nc.options["max_reconnect_attempts"] = -1
            self._js = nc.jetstream(timeout=2.0)
            config = StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                max_age=self.max_age,
                duplicate_window=min(120.0, self.max_age),
            )
            try:
                await self._js.add_stream(config)
            except Exception:  # it exists: make sure the config is ours
                await self._js.update_stream(config)
            self._nc = nc
            await self._subscribe()
        except BaseException:
            await nc.close()
            raise
        self._set_connected(True)

    async def _subscribe(self) -> None:
        """(Re)create the ordered consumer, starting after the last message seen.

        The first time, "the last message seen" is the stream's last message now (a new
        host does not replay history); after a reconnect it is the last one delivered,
        so what was published while we were away arrives (at least once), or, if the
        stream discarded some of it meanwhile, the gap is reported.
        """
        from nats.js.api import DeliverPolicy

        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # the server forgot it already
                pass
        self._subs = []
        info = await self._js.stream_info(self.stream)
        if self._seen is None:
            self._seen = int(info.state.last_seq)
        elif int(info.state.first_seq) > self._seen + 1:
            self._gap(
                f"stream {self.stream} discarded messages {self._seen + 1}.."
                f"{int(info.state.first_seq) - 1} before this host read them"
            )
            # Reported once: the consumer starts at the first message left.
            self._seen = int(info.state.first_seq) - 1

        async def on_message(msg: Any) -> None:
            sequence = int(msg.metadata.sequence.stream)
            seen = self._seen or 0
            if sequence <= seen:
                return  # already delivered (a consumer re-created from an older position)
            if sequence > seen + 1:
                self._gap(f"stream {self.stream} discarded messages {seen + 1}..{sequence - 1}")
            self._seen = sequence
            await self._deliver(msg.data)

        sub = await self._js.subscribe(
            f"{self.prefix}.>",
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=_start_at(self._seen + 1),
            stream=self.stream,
        )
        self._subs.append(sub)

    async def _send(self, message: BusMessage) -> None:
        await self._js.publish(
            f"{self.prefix}.{message.topic}",
            message.encode(),
            stream=self.stream,
            headers={"Nats-Msg-Id": message.id},
            timeout=2.0,
        )

    async def _alive(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    async def _disconnect(self) -> None:
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:  # closing anyway
                pass
        if self._nc is not None:
            try:
                await asyncio.wait_for(self._nc.close(), 5)
            except Exception:
                pass


def _start_at(sequence: int) -> Any:
    from nats.js.api import ConsumerConfig

    return ConsumerConfig(opt_start_seq=sequence)
