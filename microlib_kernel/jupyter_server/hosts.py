"""``GET /microlib/hosts``: every live in-kernel host, with its models and counts.

The server asks each registered host for its ``/config`` (and one count per published
model) over loopback, concurrently and with a short timeout, so a host busy in a
CPU-bound cell shows as ``unreachable`` instead of holding the sidebar up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

from .registry import HostRegistration

#: Seconds a host has to answer ``/config`` (and its counts) for the sidebar.
DESCRIBE_TIMEOUT = 3.0

#: Paths below the server's base URL, as the browser uses them.
PROXY_ROOT = "microlib/proxy"


def proxy_path(kernel_id: str) -> str:
    """The path of a host below the server's base URL (no leading slash)."""
    return f"{PROXY_ROOT}/{kernel_id}"


async def _count(
    client: httpx.AsyncClient, api: str, endpoint: str, headers: dict[str, str]
) -> int | None:
    try:
        response = await client.get(
            f"{api}/models/{endpoint}",
            params={"__count": "all"},
            timeout=DESCRIBE_TIMEOUT,
            headers=headers,
        )
        total = response.json().get("total") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return total if isinstance(total, int) else None


def _model_view(item: Mapping[str, Any], base: str) -> dict[str, Any]:
    endpoint = str(item.get("endpoint") or "")
    return {
        "name": item.get("name"),
        "endpoint": endpoint,
        "active": item.get("active"),
        "published": bool(item.get("published", item.get("active") is not None)),
        "versions": list(item.get("versions") or []),
        "routes": dict(item.get("routes") or {}),
        "url": f"{base}/models/{endpoint}",
        "count": None,
    }


async def describe(
    client: httpx.AsyncClient,
    reg: HostRegistration,
    kernel: Mapping[str, Any] | None,
    *,
    deploy: bool,
) -> dict[str, Any]:
    """One host as ``GET /microlib/hosts`` lists it.

    Args:
        client: the server extension's HTTP client.
        reg: the host's registration.
        kernel: what this server knows of the kernel (``name``, ``execution_state``,
            ``path`` of its notebook), or ``None`` if it is not one of its kernels.
        deploy: whether the deploy token can be read (rollback and unpublish work).
    """
    base = f"{proxy_path(reg.kernel_id)}{reg.api_root}"
    out: dict[str, Any] = {
        "kernel_id": reg.kernel_id,
        "pid": reg.pid,
        "url": reg.url,
        "api_root": reg.api_root,
        "started": reg.started,
        "version": reg.version,
        "proxy": proxy_path(reg.kernel_id),
        "api": base,
        "docs": f"{base}/docs",
        "events": f"{base}/events",
        "deploy": deploy,
        "notebook": (kernel or {}).get("path"),
        "kernel_name": (kernel or {}).get("name"),
        "execution_state": (kernel or {}).get("execution_state"),
        "status": "ok",
        "models": [],
    }
    # A host with auth on takes its deploy token on every route (http/auth.py).
    token = reg.deploy_token() if reg.auth else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = await client.get(
            f"{reg.api_url}/config", timeout=DESCRIBE_TIMEOUT, headers=headers
        )
    except httpx.TimeoutException:
        return {**out, "status": "unreachable", "error": "the host did not answer in time"}
    except httpx.HTTPError as exc:
        return {**out, "status": "unreachable", "error": f"cannot reach the host: {exc}"}
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        message = body.get("error") if isinstance(body, dict) else None
        error = f"the host answered {response.status_code}" + (f": {message}" if message else "")
        return {**out, "status": "error", "error": error}
    models = [_model_view(m, base) for m in body.get("models") or [] if isinstance(m, dict)]
    counts = await asyncio.gather(
        *(_count(client, reg.api_url, m["endpoint"], headers) for m in models if m["published"])
    )
    for model, count in zip([m for m in models if m["published"]], counts, strict=True):
        model["count"] = count
    out["models"] = models
    return out
