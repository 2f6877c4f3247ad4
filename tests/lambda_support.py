"""Lambda events for the tests, from the fixtures in ``tests/fixtures/lambda``.

Each fixture is one request (``POST /microlib/api/models/orders``) in the shape AWS
sends it; :func:`event` rewrites it into another request in the same format, the way
that source would encode it (REST APIs decode query strings, ALBs do not; HTTP APIs
join repeated values with commas; ...). :func:`reply` reads a handler's response back,
checking it has the keys that source expects.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

FIXTURES = Path(__file__).parent / "fixtures" / "lambda"
SHOP = FIXTURES / "shop.ipynb"

#: event kind -> fixture file
KINDS = {
    "rest_v1": "apigw_rest_v1.json",
    "http_v2": "http_api_v2.json",
    "function_url": "function_url.json",
    "alb": "alb.json",
    "alb_multi": "alb_multi_value.json",
}

Query = Mapping[str, str] | Sequence[tuple[str, str]]


def fixture(kind: str) -> dict[str, Any]:
    """A fresh copy of the fixture event of ``kind``."""
    data: dict[str, Any] = json.loads((FIXTURES / KINDS[kind]).read_text(encoding="utf-8"))
    return data


def event(
    kind: str,
    method: str,
    path: str,
    *,
    query: Query | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    base64_body: bool = False,
    stage: str | None = None,
) -> dict[str, Any]:
    """The fixture of ``kind`` rewritten as ``METHOD path?query`` with ``body``.

    Args:
        kind: a key of :data:`KINDS`.
        method: HTTP method.
        path: the path the client asked for, without any stage.
        query: query parameters (pairs may repeat a name).
        body: bytes, text, or anything else (sent as JSON); ``None`` for no body.
        headers: extra request headers.
        base64_body: send the body base64-encoded (``isBase64Encoded``).
        stage: the API Gateway stage (REST: ``prod`` by default; HTTP API:
            ``$default`` by default, another name puts ``/STAGE`` before the path).
    """
    ev = copy.deepcopy(fixture(kind))
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query or [])
    raw = _body_bytes(body)
    text: str | None
    if raw is None:
        text = None
    elif base64_body:
        text = base64.b64encode(raw).decode()
    else:
        text = raw.decode()
    extra = dict(headers or {})
    if kind == "rest_v1":
        _rest(ev, method, path, pairs, extra, stage or "prod")
        ev["body"] = text
    elif kind in ("http_v2", "function_url"):
        _http(ev, method, path, pairs, extra, stage)
        if text is None:
            ev.pop("body", None)
        else:
            ev["body"] = text
    else:
        _alb(ev, method, path, pairs, extra, multi=kind == "alb_multi")
        ev["body"] = text or ""
    ev["isBase64Encoded"] = bool(base64_body and raw is not None)
    return ev


def _body_bytes(body: Any) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


def _rest(
    ev: dict[str, Any],
    method: str,
    path: str,
    pairs: list[tuple[str, str]],
    extra: dict[str, str],
    stage: str,
) -> None:
    ev["httpMethod"] = method
    ev["path"] = path
    ev["pathParameters"] = {"proxy": path.lstrip("/")}
    ctx = ev["requestContext"]
    ctx.update(httpMethod=method, path=f"/{stage}{path}", stage=stage)
    for name, value in extra.items():
        ev["headers"][name] = value
        ev["multiValueHeaders"][name] = [value]
    if pairs:
        multi: dict[str, list[str]] = {}
        for name, value in pairs:
            multi.setdefault(name, []).append(value)
        ev["multiValueQueryStringParameters"] = multi
        ev["queryStringParameters"] = {k: v[-1] for k, v in multi.items()}


def _http(
    ev: dict[str, Any],
    method: str,
    path: str,
    pairs: list[tuple[str, str]],
    extra: dict[str, str],
    stage: str | None,
) -> None:
    stage = stage or "$default"
    full = path if stage == "$default" else f"/{stage}{path}"
    ev["rawPath"] = full
    ev["rawQueryString"] = urlencode(pairs)
    ctx = ev["requestContext"]
    ctx["http"].update(method=method, path=full)
    ctx["stage"] = stage
    if "pathParameters" in ev:
        ev["pathParameters"] = {"proxy": path.lstrip("/")}
    if pairs:
        joined: dict[str, str] = {}
        for name, value in pairs:
            joined[name] = f"{joined[name]},{value}" if name in joined else value
        ev["queryStringParameters"] = joined
    headers = ev["headers"]
    headers.pop("content-length", None)
    for name, value in extra.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value


def _alb(
    ev: dict[str, Any],
    method: str,
    path: str,
    pairs: list[tuple[str, str]],
    extra: dict[str, str],
    *,
    multi: bool,
) -> None:
    ev["httpMethod"] = method
    ev["path"] = path
    # An ALB passes query strings on as the client encoded them.
    if multi:
        mv: dict[str, list[str]] = {}
        for name, value in pairs:
            mv.setdefault(quote(name), []).append(quote(value))
        ev["multiValueQueryStringParameters"] = mv
        for name, value in extra.items():
            ev["multiValueHeaders"][name.lower()] = [value]
    else:
        ev["queryStringParameters"] = {quote(n): quote(v) for n, v in pairs}
        for name, value in extra.items():
            ev["headers"][name.lower()] = value


@dataclass
class Reply:
    """A handler's response, read back the same way whatever its format."""

    status: int
    headers: dict[str, list[str]]
    body: bytes
    raw: dict[str, Any]

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


_EXPECTED_KEYS = {
    "rest_v1": {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"},
    "http_v2": {"statusCode", "headers", "body", "isBase64Encoded", "cookies"},
    "function_url": {"statusCode", "headers", "body", "isBase64Encoded", "cookies"},
    "alb": {"statusCode", "statusDescription", "headers", "body", "isBase64Encoded"},
    "alb_multi": {
        "statusCode",
        "statusDescription",
        "multiValueHeaders",
        "body",
        "isBase64Encoded",
    },
}


def reply(kind: str, response: dict[str, Any]) -> Reply:
    """Read ``response`` as the source of ``kind`` would; its keys must suit that source."""
    assert isinstance(response, dict), response
    unexpected = set(response) - _EXPECTED_KEYS[kind]
    assert not unexpected, f"{kind} response has keys it does not take: {unexpected}"
    assert isinstance(response["statusCode"], int)
    headers: dict[str, list[str]] = {}
    for name, value in (response.get("headers") or {}).items():
        headers.setdefault(name.lower(), []).append(value)
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), []).extend(values)
    if kind == "alb_multi":
        assert "headers" not in response, "an ALB with multi-value headers wants only those"
    body_text = response.get("body") or ""
    body = base64.b64decode(body_text) if response.get("isBase64Encoded") else body_text.encode()
    return Reply(response["statusCode"], headers, body, response)


class LambdaContext:
    """What the Lambda runtime passes as ``context``: the attributes handlers read."""

    function_name = "microlib-test"
    memory_limit_in_mb = 1024
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
