"""What the proxy changes on the way through: headers, redirects, the docs page, OpenAPI.

Pure functions (no I/O), so the rules are tested without a server:

* the browser's credentials for Jupyter (cookies, ``Authorization: token ...``, XSRF)
  never reach a host; ``X-Microlib-Authorization`` becomes the host's ``Authorization``
  (for hosts with API tokens on), and the deploy routes get the host's deploy token;
  without ``X-Microlib-Authorization``, the other routes get the deploy token too, which
  a host with auth on accepts on every route: the proxy keeps working with auth on
  (Jupyter has already checked that the user may read or write the kernel);
* hop-by-hop headers are dropped both ways, and a host cannot set cookies on the
  Jupyter origin;
* a redirect or ``Location`` to the host is rewritten under the proxy prefix, and so
  are the docs page's asset links and the OpenAPI ``servers`` (so "Try it out" works).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

#: RFC 9110 §7.6.1 hop-by-hop headers, plus the ones the client library recomputes.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)

#: Request headers that carry the browser's Jupyter credentials or origin.
JUPYTER_ONLY = frozenset({"cookie", "authorization", "x-xsrftoken", "x-csrftoken", "referer"})

#: Response headers a host may not send through Jupyter's origin.
NOT_RELAYED = frozenset({"set-cookie", "server", "date", "content-security-policy"})

#: The header a browser uses to send an API token meant for the host itself.
HOST_AUTH_HEADER = "x-microlib-authorization"

#: Where the host's deploy routes live, below its API root (DESIGN.md §4).
_DEPLOY = re.compile(r"/deploy(?:/.*)?")


def is_deploy_path(path: str, api_root: str) -> bool:
    """Whether ``path`` (the host-side path, without query) is one of the deploy routes."""
    root = api_root.rstrip("/")
    return path.startswith(root) and bool(_DEPLOY.fullmatch(path[len(root) :]))


def request_headers(
    incoming: Iterable[tuple[str, str]],
    *,
    prefix: str,
    deploy_token: str | None = None,
    api_token: str | None = None,
) -> list[tuple[str, str]]:
    """The headers sent to the host for a browser request with ``incoming`` headers.

    Args:
        incoming: the browser's headers (name, value) pairs.
        prefix: the proxy path of the host, sent as ``X-Forwarded-Prefix``.
        deploy_token: when given, sent as ``Authorization: Bearer`` (deploy routes).
        api_token: sent as ``Authorization: Bearer`` when the browser sent no
            ``X-Microlib-Authorization`` (the API routes of a host with auth on).
    """
    out: list[tuple[str, str]] = []
    host_auth: str | None = None
    for name, value in incoming:
        low = name.lower()
        if low == HOST_AUTH_HEADER:
            host_auth = value
        elif low in HOP_BY_HOP or low in JUPYTER_ONLY or low.startswith("x-forwarded-"):
            continue
        else:
            out.append((name, value))
    if deploy_token is not None:
        out.append(("Authorization", f"Bearer {deploy_token}"))
    elif host_auth:
        out.append(("Authorization", host_auth))
    elif api_token:
        out.append(("Authorization", f"Bearer {api_token}"))
    out.append(("X-Forwarded-Prefix", prefix))
    return out


def response_headers(
    incoming: Iterable[tuple[str, str]], *, host_url: str, prefix: str
) -> list[tuple[str, str]]:
    """The host's response headers as relayed to the browser (``Location`` rewritten)."""
    out = []
    for name, value in incoming:
        low = name.lower()
        if low in HOP_BY_HOP or low in NOT_RELAYED:
            continue
        if low in ("location", "content-location"):
            value = rewrite_location(value, host_url=host_url, prefix=prefix)
        out.append((name, value))
    return out


def rewrite_location(value: str, *, host_url: str, prefix: str) -> str:
    """A ``Location`` pointing at the host, moved under the proxy ``prefix``.

    ``/microlib/api/x`` and ``http://127.0.0.1:8707/microlib/api/x`` both become
    ``<prefix>/microlib/api/x``; other URLs (and relative ones) are left as they are.
    """
    host = host_url.rstrip("/")
    if value.startswith(host + "/") or value == host:
        value = value[len(host) :] or "/"
    if value.startswith("/") and not value.startswith("//"):
        return prefix.rstrip("/") + value
    return value


def strip_query_token(query: str, token: str | None) -> str:
    """The query string without Jupyter's own ``token=`` parameter (never sent on)."""
    if not query or not token:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not (k == "token" and v == token)]
    return query if len(kept) == len(pairs) else urlencode(kept)


def rewrite_openapi(body: bytes, prefix: str) -> bytes | None:
    """The OpenAPI document with ``servers`` pointing at the proxy; ``None`` if not JSON."""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    doc["servers"] = [{"url": prefix.rstrip("/") or "/", "description": "through Jupyter"}]
    return json.dumps(doc).encode()


def docs_page(prefix: str, api_root: str) -> str:
    """The host's docs page (Swagger UI) with its asset and OpenAPI links under ``prefix``."""
    from ..http.docs import docs_page as page

    return page(prefix.rstrip("/") + api_root, title="microlib API (through Jupyter)")


def host_path_of(request_path: str, prefix: str) -> str:
    """The host-side path of a proxied request path (still percent-encoded)."""
    rest = request_path[len(prefix) :] if request_path.startswith(prefix) else ""
    return rest if rest.startswith("/") else "/" + rest


def split_url(url: str) -> tuple[str, str]:
    """``http://h:p/a/b?q`` -> (``http://h:p``, ``/a/b?q``)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}", path + (f"?{parts.query}" if parts.query else "")
