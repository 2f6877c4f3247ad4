"""The notebook experience: the IPython extension, magics, displays, dashboard.

``current_host()`` returns the in-kernel host of the running notebook (after
``%load_ext microlib_kernel``), for code that wants the Python API or its URL.
"""

from __future__ import annotations

from typing import Any


def current_host() -> Any:
    """The in-kernel :class:`~microlib_kernel.Host` of the running notebook.

    Raises:
        UsageError: not in IPython, or the extension is not loaded.
    """
    from .extension import current_host as find

    return find()


__all__ = ["current_host"]
