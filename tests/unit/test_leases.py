"""Flow leases: claims, expiry, counted holds and the release rule (no database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from microlib_kernel.errors import DatasourceUnavailable
from microlib_kernel.host.leases import ClaimFailed, FlowLeases
from microlib_kernel.store.leases import LeaseStore, LocalLeases
from tests.ports_support import FlakyClaims

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_one_owner_until_the_lease_expires() -> None:
    clock = Clock()
    store = LocalLeases(clock)
    assert await store.claim("orders/1", "a", 10)
    assert await store.claim("orders/1", "a", 10)  # ours already
    assert not await store.claim("orders/1", "b", 10)
    clock.now = 5
    assert await store.renew(["orders/1", "orders/2"], "a", 10) == {"orders/1"}
    clock.now = 14
    assert await store.expired() == []
    clock.now = 16
    assert await store.expired() == ["orders/1"]
    assert await store.claim("orders/1", "b", 10)
    await store.release("orders/1", "a")  # not a's any more: nothing happens
    assert not await store.claim("orders/1", "a", 10)


def _leases(store: LocalLeases, finished: bool) -> FlowLeases:
    leases = FlowLeases(store, "a", ttl=10, shared=True)

    async def is_finished(key: str) -> bool:
        return finished

    async def orphan(key: str) -> None:
        raise AssertionError(f"nothing expires in these tests, yet {key} was taken over")

    leases.start(orphan, is_finished)  # its loops sleep ttl/3 first: closed before
    return leases


async def test_a_finished_flow_releases_its_lease_after_the_last_hold() -> None:
    store = LocalLeases(Clock())
    leases = _leases(store, finished=True)
    assert await leases.acquire("orders/1")
    assert await leases.acquire("orders/1")  # a second port of the same instance
    await leases.done("orders/1")
    assert leases.held == ["orders/1"]
    await leases.done("orders/1")
    assert leases.held == []
    assert await store.claim("orders/1", "b", 10)
    await leases.close()


async def test_an_unfinished_flow_keeps_its_lease_between_steps() -> None:
    store = LocalLeases(Clock())
    leases = _leases(store, finished=False)
    assert await leases.acquire("orders/1")
    await leases.done("orders/1")
    assert leases.held == ["orders/1"]  # the next step has not started yet
    assert not await store.claim("orders/1", "b", 10)
    await leases.close()


async def test_a_hold_taken_during_the_release_check_wins() -> None:
    store = LocalLeases(Clock())
    leases = _leases(store, finished=True)
    await leases.acquire("orders/1")
    done = asyncio.create_task(leases.done("orders/1"))
    await leases.acquire("orders/1")  # the next port started at once
    await done
    assert leases.held == ["orders/1"]
    assert not await store.claim("orders/1", "b", 10)
    await leases.close()


async def test_a_host_alone_stores_nothing() -> None:
    store = LocalLeases(Clock())
    leases = FlowLeases(store, "a", shared=False)
    assert await leases.acquire("orders/1")
    await leases.done("orders/1")
    assert leases.held == [] and await store.expired() == [] and store._leases == {}


async def test_a_lost_lease_is_not_taken_back_by_a_late_done() -> None:
    store = LocalLeases(Clock())
    leases = _leases(store, finished=True)
    await leases.acquire("orders/1")
    leases._holds.pop("orders/1")  # what the renewal does when another host took it
    await leases.done("orders/1")
    assert leases.held == []
    await leases.close()


async def test_an_acquire_waits_for_a_release_in_flight() -> None:
    clock = Clock()

    class SlowRelease(LocalLeases):
        async def release(self, key: str, owner: str) -> None:
            await asyncio.sleep(0.05)
            await super().release(key, owner)

    store = SlowRelease(clock)
    leases = _leases(store, finished=True)
    await leases.acquire("orders/1")
    done = asyncio.create_task(leases.done("orders/1"))
    await asyncio.sleep(0.01)  # the DELETE is under way
    assert await leases.acquire("orders/1")
    await done
    # The new hold's lease is in the store: the earlier release did not remove it.
    assert not await store.claim("orders/1", "b", 10)
    await leases.close()


def _renewing(store: LocalLeases, *, finished: bool, idle_renewals: int = 3) -> FlowLeases:
    """Leases whose renewal runs every 20 ms (nothing expires: renewals keep them)."""
    leases = FlowLeases(store, "a", ttl=0.06, shared=True, idle_renewals=idle_renewals)

    async def is_finished(key: str) -> bool:
        return finished

    async def orphan(key: str) -> None:
        raise AssertionError(f"{key} was taken over, yet its owner renewed it")

    leases.start(orphan, is_finished)
    return leases


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        await asyncio.sleep(0.01)


async def test_a_flow_waiting_here_for_too_long_is_released_for_any_host() -> None:
    # Its next step cannot start here (say its adapter is not deployed on this host):
    # the lease is released after a few renewals, so another host can run the flow.
    store = LocalLeases()
    leases = _renewing(store, finished=False)
    assert await leases.acquire("orders/1")
    await leases.done("orders/1")
    assert leases.held == ["orders/1"]
    assert not await store.claim("orders/1", "b", 10)
    await _until(lambda: leases.held == [], "the waiting lease being parked")
    assert leases.parked == 1
    assert await store.claim("orders/1", "b", 10)  # the next event on host b takes it
    await leases.close()


async def test_a_running_step_keeps_its_lease_and_a_new_hold_restarts_the_count() -> None:
    store = LocalLeases()
    leases = _renewing(store, finished=False, idle_renewals=10)
    assert await leases.acquire("orders/1")  # a port running for a long time
    assert await leases.acquire("orders/2")
    await leases.done("orders/2")
    for _ in range(3):  # orders/2 keeps getting a next step just before the limit
        await _until(lambda: leases._idle.get("orders/2", 0) >= 3, "renewals at zero holds")
        assert await leases.acquire("orders/2")
        await leases.done("orders/2")
        assert leases._idle.get("orders/2", 0) <= 1
    await _until(lambda: leases.parked == 1, "orders/2 parked at last")
    assert leases.held == ["orders/1"]  # a step still running is never parked
    assert not await store.claim("orders/1", "b", 10)
    await leases.close()


async def test_a_parked_flow_is_claimed_again_by_its_next_step_here() -> None:
    store = LocalLeases()
    leases = _renewing(store, finished=False, idle_renewals=1)
    assert await leases.acquire("orders/1")
    await leases.done("orders/1")
    await _until(lambda: leases.held == [], "the waiting lease being parked")
    assert await leases.acquire("orders/1")  # e.g. the adapter was deployed and called
    assert not await store.claim("orders/1", "b", 10)
    await leases.close()


def _flaky(store: LeaseStore, ttl: float = 10.0) -> FlowLeases:
    return FlowLeases(store, "a", ttl=ttl, shared=True, claim_delays=(0.0, 0.01, 0.02))


async def test_a_claim_failing_on_the_database_is_retried_when_asked() -> None:
    store = FlakyClaims(LocalLeases(), failures=3)
    leases = _flaky(store)
    assert await leases.acquire("orders/1", retry=True)
    assert store.claims == 4 and leases.held == ["orders/1"]
    assert not await store.claim("orders/1", "b", 10)  # it is ours in the store


async def test_a_claim_that_keeps_failing_holds_nothing() -> None:
    store = FlakyClaims(LocalLeases(), failures=4)
    leases = _flaky(store)
    with pytest.raises(ClaimFailed) as caught:
        await leases.acquire("orders/1", retry=True)
    assert isinstance(caught.value.__cause__, DatasourceUnavailable)
    assert store.claims == 4 and leases.held == [] and leases.claims_failed == 1
    assert await store.claim("orders/1", "b", 10)  # unclaimed: free for anyone


async def test_a_direct_claim_is_not_retried() -> None:
    # A port called over HTTP answers 503 with Retry-After at once; its client retries.
    store = FlakyClaims(LocalLeases(), failures=1)
    leases = _flaky(store)
    with pytest.raises(DatasourceUnavailable) as caught:
        await leases.acquire("orders/1")
    assert not isinstance(caught.value, ClaimFailed)
    assert store.claims == 1 and leases.held == []


async def test_the_reaper_runs_a_step_whose_claim_failed_on_its_next_round() -> None:
    leases = _flaky(LocalLeases(), ttl=0.04)
    ran: list[str] = []

    async def orphan(key: str) -> None:
        raise AssertionError(f"nothing expires here, yet {key} was taken over")

    async def is_finished(key: str) -> bool:
        return True

    leases.start(orphan, is_finished)
    leases.retry_later("orders/1", "pick", lambda: ran.append("first"))
    leases.retry_later("orders/1", "pick", lambda: ran.append("pick"))  # the latest wins
    leases.retry_later("orders/2", "pick", lambda: ran.append("other"))
    assert leases.waiting == 2
    await _until(lambda: leases.waiting == 0, "the reaper's round")
    assert sorted(ran) == ["other", "pick"]
    await leases.close()
