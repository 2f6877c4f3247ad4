"""The host's injected collaborators: clock and rng go where the context says they do."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from microlib_kernel import Host
from microlib_kernel.host.context import SystemClock
from tests.models import make_models

ITEMS = [{"sku": "a", "price": 2}]


class FixedClock(SystemClock):
    """A wall clock stopped at one instant (the monotonic side stays real)."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def now(self) -> dt.datetime:
        return self.at


def test_the_injected_clock_stamps_rows_versions_and_deployments() -> None:
    at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with Host("memory://", clock=FixedClock(at)) as host:
        Order, _ = make_models()
        host.publish(Order, who="alice")
        order = asyncio.run(Order.create(items=ITEMS))
        assert order.created_at == order.updated_at == at
        assert host.registry.get("Order").latest().published_at == at
        last = host.deployments[-1]
        assert (last.time, last.who, last.names) == (at, "alice", ["Order"])


def test_sync_admin_methods_sign_the_deployment_log() -> None:
    with Host("memory://") as host:
        Order, _ = make_models()
        host.publish(Order, who="alice")
        Order2, _ = make_models()
        host.publish(Order2, who="bob")
        host.route("Order", {"1.0.0": 50, "1.0.1": 50}, who="carol")
        host.rollback("Order", "1.0.0", who="dave")
        host.unpublish("Order", who="erin")
        assert [(d.kind, d.who) for d in host.deployments] == [
            ("model", "alice"),
            ("model", "bob"),
            ("route", "carol"),
            ("rollback", "dave"),
            ("unpublish", "erin"),
        ]


def test_a_seeded_rng_makes_weighted_picks_repeatable() -> None:
    def picks(seed: int) -> list[str]:
        with Host("memory://", rng=random.Random(seed)) as host:
            Order, _ = make_models()
            host.publish(Order)
            Order2, _ = make_models()
            host.publish(Order2)
            host.route("Order", {"1.0.0": 50, "1.0.1": 50})
            entry = host.registry.get("Order")
            return [entry.pick().version for _ in range(40)]

    first = picks(7)
    assert first == picks(7)
    assert set(first) == {"1.0.0", "1.0.1"}  # 40 fair picks: both versions serve
