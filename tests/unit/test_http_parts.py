"""The HTTP layer's small parts, without a server: parsing, auth, bodies, frames, errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from microlib_kernel import (
    BadQuery,
    Conflict,
    MicrolibError,
    Model,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from microlib_kernel.client import error_from_response, resolve_url
from microlib_kernel.domain.events import Event
from microlib_kernel.http.auth import authenticate, parse_roles
from microlib_kernel.http.docs import docs_page
from microlib_kernel.http.headers import header
from microlib_kernel.http.openapi_paths import IF_MATCH_PATTERN
from microlib_kernel.http.openapi_schemas import not_null
from microlib_kernel.http.responses import JSONResponse, jsonable, read_json, read_object
from microlib_kernel.http.routes_admin import sse_frame
from microlib_kernel.http.routes_models import parse_if_match
from microlib_kernel.http.server import base_url

pytestmark = pytest.mark.anyio


def request(headers: dict[str, str] | None = None, body: Iterable[bytes] = ()) -> Request:
    chunks = list(body)

    async def receive() -> dict[str, Any]:
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}
        return {"type": "http.request", "body": b"", "more_body": False}

    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "method": "POST", "headers": raw}, receive)


def test_if_match_takes_a_revision() -> None:
    assert parse_if_match(None) is None and parse_if_match("*") is None
    assert parse_if_match("3") == 3 and parse_if_match('"3"') == 3 and parse_if_match('W/"7"') == 7
    for bad in ("", "x", "-1", "1.5", "9" * 30):
        with pytest.raises(ValidationFailed, match="If-Match"):
            parse_if_match(bad)
    import re

    assert re.match(IF_MATCH_PATTERN, 'W/"12"') and not re.match(IF_MATCH_PATTERN, "")


def test_roles_from_the_header_when_auth_is_off() -> None:
    assert parse_roles(" a, b ,,c ") == ("a", "b", "c") and parse_roles(None) == ()
    principal = authenticate(request({"X-Microlib-Roles": "read, write"}), {})
    assert principal.roles == ("read", "write") and not principal.authenticated
    assert authenticate(request(), {}).roles == ()


def test_bearer_tokens_when_auth_is_on() -> None:
    tokens = {"t-1": ("read",), "t-2": ("admin", "write")}
    p = authenticate(request({"Authorization": "Bearer t-2", "X-Microlib-Roles": "read"}), tokens)
    assert p.roles == ("admin", "write") and p.authenticated
    assert p.name.startswith("token:") and "t-2" not in p.name
    assert authenticate(request({"Authorization": "bearer  t-1 "}), tokens).roles == ("read",)
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic t-1"}):
        with pytest.raises(Unauthorized, match="needs an API token"):
            authenticate(request(headers), tokens)
    with pytest.raises(Unauthorized, match="unknown API token"):
        authenticate(request({"Authorization": "Bearer t-3"}), tokens)


async def test_bodies_are_limited_twice_and_parsed_strictly() -> None:
    assert await read_json(request(body=[b'{"a": ', b"1}"]), 100) == {"a": 1}
    with pytest.raises(PayloadTooLarge) as declared:
        await read_json(request({"Content-Length": "101"}, [b"{}"]), 100)
    assert declared.value.status == 413 and declared.value.details["limit"] == 100
    with pytest.raises(PayloadTooLarge):  # no Content-Length: counted while streaming
        await read_json(request(body=[b"[" + b"1," * 30, b"1," * 30, b"1]"]), 100)
    with pytest.raises(ValidationFailed, match="Content-Length is not a number"):
        await read_json(request({"Content-Length": "ten"}), 100)
    for bad in (b"{", b"[NaN]", b"-Infinity", b"\xff", b"[" * 50_000):
        with pytest.raises(ValidationFailed, match="malformed JSON") as info:
            await read_json(request(body=[bad]), 1 << 20)
        assert info.value.errors[0]["type"] == "json_invalid"
    with pytest.raises(ValidationFailed, match="empty"):
        await read_json(request(), 100)
    assert await read_json(request(body=[b"  "]), 100, default={}) == {}
    with pytest.raises(ValidationFailed, match="must be a JSON object, got list"):
        await read_object(request(body=[b"[1]"]), 100, "the data")


def test_sse_frames_are_one_event_each() -> None:
    event = Event("order.created", {"k": "line\nbreak"}, model="Order", model_id="a1", id="e1")
    frame = sse_frame(event).decode()
    assert frame.startswith("id: e1\nevent: order.created\ndata: {") and frame.endswith("}\n\n")
    assert frame.count("\n") == 4  # the newline inside the data is escaped JSON
    assert "event: bad name\n" in sse_frame(Event("bad\nname", {})).decode()


def test_jsonable_uses_each_models_own_json() -> None:
    class Thing(Model, endpoint="things"):
        size: int = 1

        def to_json(self) -> dict[str, Any]:
            return {"masked": True}

    t = Thing()
    when = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert jsonable({"t": t, "ts": [t], 1: when}) == {
        "t": {"masked": True},
        "ts": [{"masked": True}],
        "1": "2024-01-02T00:00:00Z",
    }
    assert jsonable(None) is None and jsonable((1, "a")) == [1, "a"]


def test_an_instance_answers_the_json_of_its_to_json() -> None:
    from microlib_kernel.domain.secrets import Secret

    class Card(Model, endpoint="cards"):
        holder: str
        number: Secret[str]
        limit: float = 2.5
        tags: list[str] = []
        seen: dt.datetime | None = None

    card = Card(
        holder='Zoë "Z"', number="4111", tags=["a"], seen=dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    )
    assert json.loads(card.json_bytes()) == card.to_json()
    assert b"4111" not in card.json_bytes() and "Zoë".encode() in card.json_bytes()

    class Masked(Model, endpoint="masked"):
        size: int = 1

        def to_json(self) -> dict[str, Any]:
            return {"masked": True}

    assert json.loads(Masked().json_bytes()) == {"masked": True}  # an override is kept

    class Trimmed(Model, endpoint="trimmed"):
        size: int = 1

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            return {"size": self.size}

    assert json.loads(Trimmed().json_bytes()) == {"size": 1}  # to_json calls model_dump


def test_answers_are_strict_json_for_floats_that_are_not_finite() -> None:
    class Reading(Model, endpoint="readings"):
        value: float = 0.0
        values: list[float] = []

    reading = Reading(value=float("inf"), values=[float("nan"), 1.5])
    assert json.loads(reading.json_bytes())["value"] is None  # never Infinity or NaN
    assert json.loads(reading.json_bytes())["values"] == [None, 1.5]
    body = JSONResponse({"r": reading.to_json(), "x": float("-inf")}).body
    assert json.loads(body) == {"r": json.loads(reading.json_bytes()), "x": None}


def test_one_header_is_read_from_the_raw_headers() -> None:
    scope = {"headers": [(b"x-a", b"1"), (b"x-microlib-roles", b"r, w"), (b"x-a", b"2")]}
    assert header(scope, b"x-a") == "1"  # the first one, as Starlette's Headers.get
    assert header(scope, b"x-b") is None and header({"headers": []}, b"x-a") is None
    assert header({"headers": [(b"x-n", "é".encode("latin-1"))]}, b"x-n") == "é"


async def test_with_auth_off_the_roles_header_gives_the_roles() -> None:
    from microlib_kernel.config import Settings
    from microlib_kernel.http.auth import Authenticator

    auth = Authenticator(Settings.load(env={}, auth_tokens={}))
    got = await auth.principal(request({"X-Microlib-Roles": " read, write ,"}))
    assert got.roles == ("read", "write") and got.name == "anonymous"
    assert not got.authenticated and not got.admin
    assert (await auth.principal(request())).roles == ()


def test_base_url_reaches_wildcard_binds_through_loopback() -> None:
    assert base_url("127.0.0.1", 8707) == "http://127.0.0.1:8707"
    assert base_url("0.0.0.0", 1) == "http://127.0.0.1:1"
    assert base_url("::", 2) == "http://[::1]:2" and base_url("::1", 3) == "http://[::1]:3"
    assert base_url("localhost", 4) == "http://localhost:4"


def test_query_values_are_never_null() -> None:
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "E"}
    assert not_null(nullable) == {"type": "string", "title": "E"}
    assert not_null({"type": "integer", "default": 0}) == {"type": "integer"}


def test_docs_page_escapes_the_root() -> None:
    page = docs_page('/a"<b')
    assert "/a&quot;&lt;b/openapi.json" in page and '/a"<b' not in page


def _response(status: int, body: Any = None, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text)
    return httpx.Response(status, json=body)


def test_error_responses_become_the_same_error_classes() -> None:
    errors = [{"loc": ["items"], "msg": "too short"}]
    exc = error_from_response(
        _response(400, {"error": "bad", "error_type": "ValidationFailed", "errors": errors})
    )
    assert type(exc) is ValidationFailed and exc.errors == errors and exc.message == "bad"
    exc = error_from_response(
        _response(400, {"error": "q", "error_type": "BadQuery", "field": "x"})
    )
    assert type(exc) is BadQuery and exc.details == {"field": "x"}
    exc = error_from_response(_response(409, {"error": "stale", "revision": 3}))
    assert type(exc) is Conflict and exc.details["revision"] == 3
    exc = error_from_response(_response(404, {"error": "gone", "error_type": "os.system"}))
    assert type(exc) is NotFound  # only classes of the error tree are trusted
    exc = error_from_response(_response(500, {"error": "internal error", "error_id": "e1"}))
    assert type(exc) is MicrolibError and exc.status == 500 and exc.details["error_id"] == "e1"
    exc = error_from_response(_response(502, text="<html>Bad Gateway</html>"))
    assert exc.status == 502 and "HTTP 502" in exc.message


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_url(None) == "http://127.0.0.1:8707"
    monkeypatch.setenv("MICROLIB_URL", "http://h:1")
    assert resolve_url(None) == "http://h:1" and resolve_url("http://u:2") == "http://u:2"
