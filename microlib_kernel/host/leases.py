"""Who runs an instance's flow: one owner per instance, by lease.

Several hosts on one shared datasource all listen for the same events and all resume
interrupted flows when they start. Without an owner, two of them could run the same
port of the same instance. A *lease* on ``endpoint/id`` makes one host the owner while
it runs that instance's ports or saga: taken before a port runs, renewed in the
background every ``ttl / 3`` seconds, released once the flow has nothing left to run.
A host that dies stops renewing; when its leases expire another host's reaper takes
them over and resumes (or compensates) those instances from their recorded state.

A lease waiting at zero holds (its flow's next step has not started: say the step's
adapter is not deployed on this host, or the event that starts it was lost) is not
kept forever, or no other host could ever run that flow while this one lives. After
``idle_renewals`` renewals in a row at zero holds (about ``ttl`` seconds with the
default 3) it is *parked*: released like a finished flow's, though the flow is not
finished. Nothing is lost: the flow's state is in the instance's row (``port_flow``,
``compensation``), and the next event for the instance, a port call, or a host's
start-up resume (on any host) claims the lease again and runs the missing step. A
parked flow is not picked up by other hosts' reapers (they look for *expired* leases,
and this one was given up, not abandoned).

A claim that fails on a database error (the server restarting, the pool exhausted)
is retried a few times with a growing wait (``claim_delays``, ending at the one second
a ``DatasourceUnavailable`` asks callers to wait) when nobody is waiting for the
answer: an event-triggered port (``acquire(key, retry=True)``). If it still fails the
lease stays unclaimed, nothing ran, and :class:`ClaimFailed` says so; the orchestrator
hands the step to :meth:`FlowLeases.retry_later`, and the reaper runs it again on its
next round (a host start-up resumes interrupted flows too). A direct port call is not
retried here: its caller gets the 503 with ``Retry-After`` at once.

What this guarantees: a completed step (recorded in ``port_flow``) never runs again,
and no two live hosts run one instance's flow at once. The step that was *in flight*
when its host died runs again on the new owner: adapters (like undo adapters) should
be idempotent, as in any saga.

The store behind it is a port (:class:`~microlib_kernel.store.leases.LeaseStore`): a
shared datasource provides one (PostgreSQL: a table, ``store/postgres_leases.py``); for
a datasource one process owns (DuckDB, memory, file) every lease is ours and nothing is
stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from ..errors import DatasourceUnavailable
from ..store.leases import LeaseStore

log = logging.getLogger("microlib_kernel.leases")


class ClaimFailed(DatasourceUnavailable):
    """A lease could not be claimed, even after retries: the database did not answer.

    Nothing ran and nothing is held; the step can be tried again later.
    """


class FlowLeases:
    """This host's leases: counted holds, background renewal, and the reaper.

    Args:
        store: where leases live.
        node: this host's id (the owner name).
        ttl: seconds a lease lasts without renewal (how long a dead host's flows wait).
        shared: whether other processes use the store; without, nothing is renewed or
            reaped (a single host resumes its own flows when it starts).
        idle_renewals: renewals in a row at zero holds after which an unfinished flow's
            lease is released (parked, see the module docstring).
        claim_delays: seconds to wait before each new claim attempt after a database
            error, for ``acquire(retry=True)`` (its length is the number of retries).
        max_retries: steps waiting for the reaper to retry them; past it the oldest
            waits for a start-up resume instead.
    """

    def __init__(
        self,
        store: LeaseStore,
        node: str,
        *,
        ttl: float = 10.0,
        shared: bool,
        idle_renewals: int = 3,
        claim_delays: Sequence[float] = (0.25, 0.5, 1.0),
        max_retries: int = 10_000,
    ) -> None:
        self.store = store
        self.node = node
        self.ttl = ttl
        self.shared = shared
        self.idle_renewals = idle_renewals
        self.claim_delays = tuple(claim_delays)
        self.max_retries = max_retries
        #: Steps whose lease could not be claimed, by (key, step): the reaper runs them.
        self._retries: dict[tuple[str, str], Callable[[], object]] = {}
        self._holds: dict[str, int] = {}
        #: Renewals in a row each key has spent at zero holds.
        self._idle: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._finished: Callable[[str], Awaitable[bool]] = _always_finished
        self._mine: Callable[[str], bool] = _any_key
        # Releases in flight: an acquire of the same key waits for the DELETE first, so
        # the DELETE can never remove the lease that acquire is about to take.
        self._releasing: dict[str, asyncio.Future[None]] = {}
        self.taken_over = 0
        self.lost = 0
        self.parked = 0
        self.claims_failed = 0

    def start(
        self,
        on_orphan: Callable[[str], Awaitable[None]],
        finished: Callable[[str], Awaitable[bool]],
        mine: Callable[[str], bool] = lambda key: True,
    ) -> None:
        """Renew our leases and take over expired ones (only for a shared store).

        Args:
            on_orphan: resumes the flow of a key taken over from a dead host.
            finished: whether a key's flow has nothing left to run (then it is released).
            mine: whether this host can run a key's flow at all (it serves the model);
                other hosts' keys are left for a host that does.
        """
        self._finished = finished
        self._mine = mine
        if not self.shared:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._renew_loop()),
            loop.create_task(self._reap_loop(on_orphan)),
        ]

    async def acquire(self, key: str, *, retry: bool = False) -> bool:
        """Hold ``key`` (again); ``False`` when a live host owns it.

        Args:
            retry: retry a claim that fails on a database error (``claim_delays``); for
                callers nobody waits on (event-triggered ports).

        Raises:
            ClaimFailed: with ``retry``, the claim kept failing (nothing is held).
            Exception: without ``retry``, the store's error (``DatasourceUnavailable``).
        """
        releasing = self._releasing.get(key)
        if releasing is not None:
            await asyncio.shield(releasing)
        self._idle.pop(key, None)
        if key in self._holds:
            self._holds[key] += 1
            return True
        if self.shared and not await self._claim(key, self.claim_delays if retry else None):
            return False
        self._holds[key] = self._holds.get(key, 0) + 1
        return True

    async def _claim(self, key: str, delays: tuple[float, ...] | None) -> bool:
        """Claim ``key`` in the store, retrying after each of ``delays`` on an error."""
        if delays is None:
            return await self.store.claim(key, self.node, self.ttl)
        for attempt in range(len(delays) + 1):
            try:
                return await self.store.claim(key, self.node, self.ttl)
            except Exception as exc:  # a claim is idempotent for its owner: safe to repeat
                if attempt == len(delays):
                    self.claims_failed += 1
                    raise ClaimFailed(
                        f"could not claim the lease on {key} after {attempt + 1} attempts"
                    ) from exc
                log.info("claiming the lease on %s failed (%s); retrying", key, exc)
                await asyncio.sleep(delays[attempt])
                if key in self._holds:  # another task of ours claimed it meanwhile
                    return True
        raise AssertionError("unreachable")  # the loop returns or raises

    def retry_later(self, key: str, step: str, attempt: Callable[[], object]) -> None:
        """Have the reaper call ``attempt()`` on its next round (a claim failed for it).

        ``attempt`` starts the step again (and calls this again if its claim fails
        again); one pending attempt per ``(key, step)``, the latest wins.
        """
        self._retries.pop((key, step), None)
        self._retries[(key, step)] = attempt
        while len(self._retries) > self.max_retries:
            (old, old_step), _ = next(iter(self._retries.items()))
            del self._retries[(old, old_step)]
            log.warning("%s %s: too many steps waiting for their lease; it resumes at the "
                        "next start-up", old, old_step)  # fmt: skip

    @property
    def waiting(self) -> int:
        """Steps waiting for the reaper to claim their lease again."""
        return len(self._retries)

    async def done(self, key: str) -> None:
        """End one hold; release ``key`` once nothing holds it and its flow is finished.

        A port's produced event starts the next port as a new task: yield once so that
        it takes its hold first, and keep the lease while the flow still has a step to
        run (if this host dies before that step, the lease is how another host finds it).
        """
        if key not in self._holds:
            return  # lost to another host meanwhile (see _renew_loop): not ours to release
        count = self._holds[key] - 1
        if count > 0:
            self._holds[key] = count
            return
        self._holds[key] = 0
        await asyncio.sleep(0)
        if self._holds.get(key) != 0:
            return
        if self.shared:
            try:
                if not await self._finished(key):
                    return  # renewed until its next step runs here, or a reaper takes it
            except Exception as exc:
                log.warning("could not check whether %s's flow finished: %s", key, exc)
                return
            if self._holds.get(key) != 0:
                return
            await self._release(key)
        else:
            del self._holds[key]

    async def _release(self, key: str) -> None:
        """Give up ``key`` (held at zero holds) in the store."""
        del self._holds[key]
        self._idle.pop(key, None)
        released = asyncio.get_running_loop().create_future()
        self._releasing[key] = released
        try:
            await self.store.release(key, self.node)
        except Exception as exc:  # it expires by itself; a reaper finds nothing to do
            log.warning("could not release the lease on %s: %s", key, exc)
        finally:
            del self._releasing[key]
            released.set_result(None)

    @property
    def held(self) -> list[str]:
        """Keys this host holds (running, or waiting for the flow's next step)."""
        return list(self._holds)

    async def close(self) -> None:
        """Stop renewing. Leases are left to expire: in-flight steps were cancelled, so
        another host must resume them."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.store.close()

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            keys = self.held
            if not keys:
                continue
            try:
                kept = await self.store.renew(keys, self.node, self.ttl)
            except Exception as exc:  # the datasource is down: try again next tick
                log.warning("could not renew %d flow leases: %s", len(keys), exc)
                continue
            for key in set(keys) - kept:
                # Expired before we renewed it (a long pause): another host may own it
                # now; its commits and ours are fenced by the instance's revision.
                self.lost += 1
                log.warning("lost the lease on %s to another host", key)
                self._holds.pop(key, None)
                self._idle.pop(key, None)
            await self._park_idle(kept)

    async def _park_idle(self, renewed: set[str]) -> None:
        """Count renewals at zero holds; release the leases that reached the limit."""
        for key in renewed:
            if self._holds.get(key) != 0 or key in self._releasing:
                self._idle.pop(key, None)
                continue
            self._idle[key] = self._idle.get(key, 0) + 1
            if self._idle[key] < self.idle_renewals:
                continue
            self.parked += 1
            log.info(
                "released the lease on %s: its flow's next step has not started here after "
                "%d renewals; the next event, call or start-up on any host takes it again",
                key,
                self._idle[key],
            )
            await self._release(key)

    async def _reap_loop(self, on_orphan: Callable[[str], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(self.ttl / 2)
            retries, self._retries = self._retries, {}
            for (key, step), attempt in retries.items():
                log.info("%s %s: trying to claim its lease again", key, step)
                try:
                    attempt()
                except Exception:
                    log.exception("retrying %s %s failed", key, step)
            try:
                keys = await self.store.expired()
            except Exception as exc:
                log.warning("could not look for orphaned flows: %s", exc)
                continue
            for key in keys:
                if key in self._holds:
                    continue  # ours: a renewal failed (the datasource was down); it renews
                if not self._mine(key):
                    continue  # a model this host does not serve: a host that does takes it
                try:
                    if not await self.acquire(key):
                        continue  # another host was faster
                except Exception as exc:
                    log.warning("could not take over %s: %s", key, exc)
                    continue
                self.taken_over += 1
                log.warning("taking over the flow of %s (its host stopped renewing)", key)
                try:
                    await on_orphan(key)
                except Exception:
                    log.exception("resuming %s failed", key)
                finally:
                    await self.done(key)


async def _always_finished(key: str) -> bool:
    return True


def _any_key(key: str) -> bool:
    return True
