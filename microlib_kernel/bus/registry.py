"""Buses by URL scheme: ``nats://``, ``redis://`` (``rediss://``), ``memory://``."""

from __future__ import annotations

from ..errors import MicrolibError
from .base import Bus

_SCHEMES = ("nats", "tls", "redis", "rediss", "memory")


def create_bus(url: str, *, cluster: str = "default") -> Bus:
    """A (not yet opened) bus for ``url``.

    Raises:
        MicrolibError: the scheme is unknown (the message lists the valid ones).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("nats", "tls"):
        from .nats import NatsBus

        return NatsBus(url, cluster=cluster)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStreamsBus

        return RedisStreamsBus(url, cluster=cluster)
    if scheme == "memory":
        from .memory import MemoryBus

        return MemoryBus(url, cluster=cluster)
    raise MicrolibError(
        f"bus {url!r} has no known scheme; use one of "
        + ", ".join(f"{s}://" for s in _SCHEMES)
        + " (e.g. nats://127.0.0.1:4222)"
    )
