"""One request header read straight from the ASGI scope, for the per-request paths.

Starlette's ``request.headers`` builds a ``Headers`` object for each ``Request`` (the
middleware and the route each make one), and its ``get`` is the pure-Python
``Mapping.get``; a GET by id read three headers that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The first value of the header ``name`` (lower case: ASGI servers lower-case
    header names), or ``None`` if the request has none."""
    for key, value in scope["headers"]:
        if key == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
