"""Pausing CPython's cyclic garbage collector for a burst of allocations.

A bulk call makes 100,000 objects that it keeps (instances, cache entries) or that
die by reference counting (the rows' dicts, write records). Every young collection
such a burst triggers walks them all to free nothing. :func:`paused_gc` switches the
collector off for the burst only and files what the burst made with the old objects,
so that no young collection walks it afterwards. A neutral module: the host's bulk
paths and the stores' bulk writers both pause.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

#: Below this many rows the collector is left alone (a pause saves nothing measurable).
PAUSE_MIN_ROWS = 1000

_pause_lock = threading.Lock()
_pauses = 0  # pauses in progress
_restore = False  # whether the collector was on when the first of them began
_promote = False  # whether a pause that ended while others ran asked for promotion


@contextlib.contextmanager
def paused_gc(rows: int, promote: bool = True) -> Iterator[None]:
    """The cyclic collector off while ``rows`` instances are made (if it was on).

    Pauses nest and may overlap across threads: the collector comes back on when the
    last one ends, and only if a pause switched it off. What the burst made is then
    moved to the oldest generation (:func:`_promote_survivors`), if any of the pauses
    asked for it: a burst that keeps what it makes (instances) asks; one whose objects
    all die with it (a write's records) does not, so that what other threads made
    meanwhile stays young and is collected as usual. Reference counting still frees
    everything that is not in a cycle; cycles made meanwhile wait for the next
    collection.
    """
    global _pauses, _restore, _promote
    if rows < PAUSE_MIN_ROWS:
        yield
        return
    with _pause_lock:
        _pauses += 1
        if _pauses == 1:
            _restore = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            _promote = _promote or promote
            if _pauses == 0:
                if _restore:
                    if _promote:
                        _promote_survivors()
                    gc.enable()
                _promote = False


def _promote_survivors() -> None:
    """Move every tracked object to the oldest generation, without a collection.

    The burst's objects are all young and all alive (they were just made to be kept):
    the first young collection after the pause would walk every one of them to find
    nothing, then the next older one would walk them again. ``freeze`` then
    ``unfreeze`` splices the young lists into the oldest generation in O(1); any cycle
    made meanwhile is still collected, at the next full collection. Skipped when the
    program froze objects itself (``unfreeze`` would thaw them).
    """
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return  # a free-threaded build walks the whole heap to freeze: no gain there
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()
