"""The host: composition root, loop, registry, repositories, deploy."""

from .deploy import Published
from .host import Host

__all__ = ["Host", "Published"]
