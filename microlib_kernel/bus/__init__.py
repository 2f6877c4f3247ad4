"""The message bus between hosts: one port, several adapters (``nats://``, ``redis://``, ``memory://``).

Several ``microlib serve`` processes on one shared datasource stay in step through a
bus: cache invalidations (:mod:`microlib_kernel.host.cluster`) and forwarded domain
events travel as small JSON messages. The bus is an existing distributed engine (NATS
JetStream or Redis streams), never a home-made cluster protocol.
"""

from __future__ import annotations

from .base import Bus, BusMessage, BusUnavailable, redact
from .registry import create_bus

__all__ = ["Bus", "BusMessage", "BusUnavailable", "create_bus", "redact"]
