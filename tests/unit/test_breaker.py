"""The circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from microlib_kernel.domain.breaker import CircuitBreaker
from microlib_kernel.domain.ports import BreakerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(**cfg: object) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    config = BreakerConfig(**{"calls": 4, "error_rate": 50, "window": 10, "cooldown": 5} | cfg)  # type: ignore[arg-type]
    return CircuitBreaker(config, clock), clock


def call(breaker: CircuitBreaker, ok: bool) -> str | None:
    admission = breaker.admit()
    assert admission != "reject"
    return breaker.record(ok, trial=admission == "trial", error=None if ok else "boom")


def test_opens_only_with_enough_calls_and_errors() -> None:
    breaker, _ = make()
    assert call(breaker, False) is None
    assert call(breaker, False) is None
    assert call(breaker, False) is None  # 3 calls < 4
    assert breaker.state == "closed"
    assert call(breaker, False) == "opened"  # 4 calls, 100 % failed
    assert breaker.state == "open" and breaker.admit() == "reject"
    assert breaker.times_opened == 1 and breaker.last_error == "boom"


def test_error_rate_threshold_is_inclusive_and_success_never_trips() -> None:
    breaker, _ = make()
    call(breaker, True)
    call(breaker, True)
    call(breaker, False)
    assert breaker.state == "closed"
    assert call(breaker, False) == "opened"  # 2 of 4 = 50 %
    breaker2, _ = make()
    for ok in (False, False, True, True, True):
        assert call(breaker2, ok) is None  # 2 of 5 = 40 %


def test_window_slides() -> None:
    breaker, clock = make()
    for _ in range(3):
        call(breaker, False)
    clock.now = 10.0  # the three failures are exactly `window` old: gone
    assert breaker.window() == (0, 0)
    assert call(breaker, False) is None
    assert breaker.window() == (1, 1)


def test_half_open_after_cooldown_one_trial_then_closed_with_a_new_window() -> None:
    breaker, clock = make()
    for _ in range(4):
        call(breaker, False)
    clock.now = 4.9
    assert breaker.admit() == "reject" and breaker.retry_in() == pytest.approx(0.1)
    clock.now = 5.0
    assert breaker.state == "half_open"
    assert breaker.admit() == "trial"
    assert breaker.admit() == "reject"  # one trial at a time
    assert breaker.record(True, trial=True) == "closed"
    assert breaker.state == "closed" and breaker.window() == (0, 0)
    assert breaker.admit() == "call"


def test_failed_trial_reopens_and_restarts_the_cooldown() -> None:
    breaker, clock = make()
    for _ in range(4):
        call(breaker, False)
    clock.now = 6.0
    assert breaker.admit() == "trial"
    assert breaker.record(False, trial=True) == "opened"
    assert breaker.state == "open" and breaker.retry_in() == 5.0
    assert breaker.times_opened == 2
    clock.now = 11.0
    assert breaker.admit() == "trial"


def test_abandoned_trial_lets_the_next_call_try() -> None:
    breaker, clock = make()
    for _ in range(4):
        call(breaker, False)
    clock.now = 5.0
    assert breaker.admit() == "trial"
    breaker.release_trial()
    assert breaker.admit() == "trial"


def test_late_results_after_opening_do_not_count() -> None:
    breaker, _ = make()
    slow = breaker.admit()
    for _ in range(4):
        call(breaker, False)
    assert breaker.record(False, trial=slow == "trial") is None
    assert breaker.times_opened == 1


def test_snapshot_and_reset() -> None:
    breaker, _ = make()
    call(breaker, False)
    snap = breaker.snapshot()
    assert snap == {
        "state": "closed",
        "calls": 1,
        "failures": 1,
        "retry_in": 0.0,
        "times_opened": 0,
        "last_error": "boom",
    }
    for _ in range(3):
        call(breaker, False)
    breaker.reset()
    assert breaker.state == "closed" and breaker.admit() == "call"
    assert "closed" in repr(breaker)
