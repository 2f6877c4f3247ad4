"""Pure flow and saga rules: consumers, resume, compensation plans, backoff."""

from __future__ import annotations

import random

import pytest

from microlib_kernel.domain.ports import PortSpec
from microlib_kernel.domain.retry import MAX_DELAY, backoff_delay
from microlib_kernel.domain.saga import consumers, plan_compensation, resume_events

PORTS = {
    "authorize": PortSpec(
        "payments.authorize", "authorize", "order.approved", "payment.authorized", "payments.cancel"
    ),
    "notify": PortSpec("mail.send", "notify", "payment.authorized"),
    "pick": PortSpec(
        "inventory.pick", "pick", "payment.authorized", "order.picked", "inventory.restock"
    ),
    "ship": PortSpec("shipping.ship", "ship", "order.picked", "order.shipped", "shipping.recall"),
    "audit": PortSpec("audit.log", "audit", "order.*"),
    "off": PortSpec("x.y", "off", "order.picked", disabled=True),
}


def test_consumers_match_globs_and_skip_disabled_ports() -> None:
    assert consumers(PORTS, "payment.authorized") == ["notify", "pick"]
    assert consumers(PORTS, "order.picked") == ["ship", "audit"]
    assert consumers(PORTS, "nothing") == []


def test_resume_events() -> None:
    assert resume_events([], None, PORTS) == []
    assert resume_events(["authorize"], None, PORTS) == ["payment.authorized"]
    # Fan-out: notify completed, pick did not.
    assert resume_events(["authorize", "notify"], None, PORTS) == ["payment.authorized"]
    assert resume_events(["authorize", "notify", "pick"], None, PORTS) == ["order.picked"]
    assert resume_events(["authorize", "pick", "notify"], None, PORTS) == ["order.picked"]
    # Two branches left behind: both events, in flow order.
    assert resume_events(["authorize", "pick"], None, PORTS) == [
        "payment.authorized",
        "order.picked",
    ]
    # Every consumer completed: nothing to resume.
    assert resume_events(["authorize", "notify", "pick", "ship", "audit"], None, PORTS) == []
    # A saga touched it: never resumed.
    assert resume_events(["authorize"], "incomplete", PORTS) == []
    assert resume_events(["authorize"], "running", PORTS) == []
    # A port no longer declared, or one that produces nothing.
    assert resume_events(["gone"], None, PORTS) == []
    assert resume_events(["audit"], None, PORTS) == []


def test_compensation_plan_is_reverse_and_drops_ports_without_undo() -> None:
    flow = ["authorize", "notify", "pick", "ship"]
    steps = plan_compensation(flow, PORTS)
    assert [(s.port, s.adapter) for s in steps] == [
        ("ship", "shipping.recall"),
        ("pick", "inventory.restock"),
        ("authorize", "payments.cancel"),
    ]
    assert steps[0].remaining == ("authorize", "notify", "pick")
    assert steps[1].remaining == ("authorize", "notify")
    assert steps[1].if_failed == ("authorize", "notify", "pick")
    assert steps[2].remaining == () and steps[2].if_failed == ("authorize",)
    assert plan_compensation([], PORTS) == []
    assert plan_compensation(["notify", "gone"], PORTS) == []


def test_a_port_run_twice_is_undone_twice() -> None:
    steps = plan_compensation(["pick", "pick"], PORTS)
    assert [s.port for s in steps] == ["pick", "pick"]
    assert steps[0].remaining == ("pick",)


def test_backoff_doubles_with_bounded_jitter() -> None:
    rng = random.Random(7)
    for retry, base in ((1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2)):
        for _ in range(50):
            assert 0.8 * base <= backoff_delay(retry, 0.1, rng) <= 1.2 * base
    assert backoff_delay(100, 1.0, rng) == MAX_DELAY
    assert backoff_delay(1, 0.0, rng) == 0.0
    delays = {backoff_delay(1, 0.1, rng) for _ in range(20)}
    assert len(delays) > 1  # jitter
    with pytest.raises(ValueError):
        backoff_delay(0, 0.1)
