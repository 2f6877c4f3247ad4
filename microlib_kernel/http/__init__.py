"""The HTTP API: ``create_app(host.api)`` (Starlette), OpenAPI, the background server, auth.

Importing this package imports nothing heavy: Starlette comes with the names below, on
first use, so light modules (``server.base_url``) stay cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .auth import Principal, authenticate
    from .responses import read_json, read_object

_LAZY = {
    "create_app": ".app",
    "Principal": ".auth",
    "authenticate": ".auth",
    "read_json": ".responses",
    "read_object": ".responses",
}

__all__ = ["Principal", "authenticate", "create_app", "read_json", "read_object"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'microlib_kernel.http' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
