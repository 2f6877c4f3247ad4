"""Closing a host (or what owns one) when the process ends."""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Protocol


class Closeable(Protocol):
    def close(self) -> None: ...


def close_at_exit(obj: Closeable) -> None:
    """Call ``obj.close()`` when the interpreter exits, if ``obj`` is still alive.

    It runs among ``threading``'s exit hooks, which come before thread pools stop
    taking work and before ``atexit`` handlers, so a host can still flush its stores
    then. Only a weak reference is kept: registering never keeps ``obj`` alive.
    """
    ref = weakref.ref(obj)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive.close()

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading exit hooks")
        register(close)
    except RuntimeError:  # the interpreter is already shutting down its threads
        atexit.register(close)
