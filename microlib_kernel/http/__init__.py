"""The HTTP API: ``create_app(host)`` (Starlette), OpenAPI, the background server, auth.

Importing this package imports Starlette; the host imports it only when it serves.
"""

from __future__ import annotations

from .app import create_app
from .auth import Principal, authenticate
from .responses import read_json, read_object

__all__ = ["Principal", "authenticate", "create_app", "read_json", "read_object"]
