"""Retry delays: exponential backoff with jitter.

Retry ``n`` (1-based) waits ``backoff * 2 ** (n - 1)`` seconds, scaled by a random
factor in ``[0.8, 1.2]`` so that instances failing together do not retry in lock
step, and capped at :data:`MAX_DELAY`.
"""

from __future__ import annotations

import random

#: No retry waits longer than this many seconds, whatever the backoff and count.
MAX_DELAY = 30.0
JITTER = 0.2


def backoff_delay(
    retry: int, backoff: float, rng: random.Random | None = None, cap: float = MAX_DELAY
) -> float:
    """Seconds to wait before retry number ``retry`` (the first retry is 1).

    Args:
        retry: which retry this is (>= 1).
        backoff: the first delay (the port's ``backoff``).
        rng: the random source (tests pass a seeded one).
        cap: the longest delay.
    """
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    base = backoff * 2.0 ** min(retry - 1, 62)
    factor = 1.0 + JITTER * (2.0 * (rng or random).random() - 1.0)
    return min(cap, base * factor)
