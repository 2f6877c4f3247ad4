"""The host: a facade over a shared context and the services around it (README layout).

``Host`` and ``Published`` are imported on first use, so that light modules of this
package (``tokens``) can be imported without the whole host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deploy import Published
    from .host import Host

__all__ = ["Host", "Published"]


def __getattr__(name: str) -> Any:
    if name == "Host":
        from .host import Host

        return Host
    if name == "Published":
        from .deploy import Published

        return Published
    raise AttributeError(f"module 'microlib_kernel.host' has no attribute {name!r}")
