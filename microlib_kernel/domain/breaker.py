"""The circuit breaker of one port: a state machine over a sliding window of calls.

.. code-block:: text

    closed --(>= calls in window, >= error_rate % failed)--> open
    open   --(cooldown elapsed, next call is a trial)-----> half_open
    half_open --(trial succeeds)--> closed (a new, empty window)
    half_open --(trial fails)-----> open (the cooldown starts again)

The breaker knows nothing of adapters, events or asyncio: the host asks it whether a
call may go through (:meth:`CircuitBreaker.admit`) and tells it how the call went
(:meth:`CircuitBreaker.record`). Time comes from an injectable clock, so every rule is
unit-tested in microseconds.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Literal

from .ports import BreakerConfig

BreakerState = Literal["closed", "open", "half_open"]
Admission = Literal["call", "trial", "reject"]
Transition = Literal["opened", "closed"]


class CircuitBreaker:
    """A breaker for one (model, port), shared by every instance of the model.

    Args:
        config: thresholds (``calls``, ``error_rate``, ``window``, ``cooldown``).
        clock: seconds from any fixed origin (default :func:`time.monotonic`).
    """

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._state: BreakerState = "closed"
        self._calls: collections.deque[tuple[float, bool]] = collections.deque()
        self._opened_at: float | None = None
        self._trial_running = False
        self.times_opened = 0
        self.last_error: str | None = None

    # -- questions ----------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state a call arriving now would see (an open breaker whose cooldown has
        elapsed reads ``half_open``: the next call is its trial)."""
        if self._state == "open" and self._cooldown_left(self._clock()) <= 0:
            return "half_open"
        return self._state

    def _cooldown_left(self, now: float) -> float:
        assert self._opened_at is not None
        return self._opened_at + self.config.cooldown - now

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial call through (0 unless open)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._cooldown_left(self._clock()))

    def window(self) -> tuple[int, int]:
        """``(calls, failures)`` within the window now."""
        self._prune(self._clock())
        failures = sum(1 for _, ok in self._calls if not ok)
        return len(self._calls), failures

    # -- the two moves --------------------------------------------------------------------

    def admit(self) -> Admission:
        """May a call go through now?

        Returns:
            ``"call"`` (closed), ``"trial"`` (the one call a half-open breaker lets
            through; report it with ``record(..., trial=True)``) or ``"reject"``.
        """
        now = self._clock()
        if self._state == "closed":
            return "call"
        if self._state == "open":
            if self._cooldown_left(now) > 0:
                return "reject"
            self._state = "half_open"
        if self._trial_running:
            return "reject"  # one trial at a time; the others wait for its verdict
        self._trial_running = True
        return "trial"

    def record(
        self, ok: bool, *, trial: bool = False, error: str | None = None
    ) -> Transition | None:
        """Record how an admitted call went.

        Args:
            ok: it succeeded.
            trial: it was the half-open trial (:meth:`admit` returned ``"trial"``).
            error: a short description of the failure (shown in status reports).

        Returns:
            ``"opened"`` when this call opened the breaker, ``"closed"`` when it closed
            it, else ``None``.
        """
        now = self._clock()
        if not ok:
            self.last_error = error
        if trial:
            self._trial_running = False
            if ok:
                self._state = "closed"
                self._calls.clear()  # a new window: old failures no longer count
                self._opened_at = None
                return "closed"
            self._open(now)
            return "opened"
        if self._state != "closed":
            # Admitted while closed, answered after another call opened the breaker:
            # the window it belonged to is over.
            return None
        self._calls.append((now, ok))
        self._prune(now)
        if not ok and self._breached():
            self._open(now)
            return "opened"
        return None

    def release_trial(self) -> None:
        """The trial was abandoned (cancelled at shutdown): let the next call try."""
        self._trial_running = False

    def reset(self) -> None:
        """Back to closed with an empty window."""
        self._state = "closed"
        self._calls.clear()
        self._opened_at = None
        self._trial_running = False

    # -- internals -------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._calls.clear()
        self.times_opened += 1

    def _prune(self, now: float) -> None:
        horizon = now - self.config.window
        while self._calls and self._calls[0][0] <= horizon:
            self._calls.popleft()

    def _breached(self) -> bool:
        calls = len(self._calls)
        if calls < self.config.calls:
            return False
        failures = sum(1 for _, ok in self._calls if not ok)
        return failures * 100.0 >= self.config.error_rate * calls

    def snapshot(self) -> dict[str, Any]:
        """The breaker as JSON-able data (``/config``, ``%microlib status``)."""
        calls, failures = self.window()
        return {
            "state": self.state,
            "calls": calls,
            "failures": failures,
            "retry_in": round(self.retry_in(), 3),
            "times_opened": self.times_opened,
            "last_error": self.last_error,
        }

    def __repr__(self) -> str:
        calls, failures = self.window()
        return f"<CircuitBreaker {self.state} {failures}/{calls} failed>"
