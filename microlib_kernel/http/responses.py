"""JSON in and out: the one place request bodies are read and responses are encoded.

Bodies are read with a size limit that is checked twice: against ``Content-Length``
before reading, and by counting the bytes as they stream in (a client may lie about,
or omit, the length). JSON is strict: ``NaN``/``Infinity`` are refused, so every model
we store can be answered as valid JSON again, and nesting stops at 200 levels.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import from_json, to_json, to_jsonable_python
from starlette.requests import Request
from starlette.responses import Response

from ..errors import PayloadTooLarge, ValidationFailed
from .headers import header

#: Marks "no default": an empty body is an error.
REQUIRED: Any = object()


class JSONResponse(Response):
    """A JSON response encoded by pydantic-core (fast; datetimes and models welcome).

    Strict JSON, as the bodies read: a float that is not finite (one a model made from
    Python may hold) is written as ``null``, as a model's own serializer writes it
    (:meth:`~microlib_kernel.domain.model.Model.json_bytes`), not as ``Infinity``.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return to_json(content, fallback=str, inf_nan_mode="null")


def jsonable(value: Any) -> Any:
    """``value`` as JSON-able data; models answer with their own ``to_json()``."""
    to_json_method = getattr(value, "to_json", None)
    if isinstance(value, BaseModel) and callable(to_json_method):
        return to_json_method()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return to_jsonable_python(value, fallback=str)


def _malformed(message: str) -> ValidationFailed:
    return ValidationFailed(
        f"malformed JSON: {message}",
        errors=[{"type": "json_invalid", "loc": ["body"], "msg": message}],
    )


async def read_json(request: Request, limit: int, *, default: Any = REQUIRED) -> Any:
    """The request body parsed as JSON.

    Args:
        request: the request.
        limit: the largest body accepted, in bytes.
        default: returned for an empty body (without it, an empty body is an error).

    Raises:
        PayloadTooLarge: the body is over ``limit`` (declared or counted).
        ValidationFailed: the body is empty (and there is no default), or not JSON.
    """
    declared = header(request.scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ValidationFailed(f"Content-Length is not a number: {declared[:40]!r}") from None
        if size > limit:
            raise _too_large(limit)
    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        if default is REQUIRED:
            raise _malformed("the request body is empty; send a JSON object")
        return default
    try:
        # pydantic-core's parser: fast, refuses NaN/Infinity, and stops at 200 levels
        # of nesting instead of recursing as deep as the body goes.
        return from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise _malformed(str(exc)) from None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body is over the limit of {limit} bytes (setting body_limit)", limit=limit
    )


async def read_object(request: Request, limit: int, what: str, *, default: Any = REQUIRED) -> Any:
    """:func:`read_json` that must be a JSON object (``what`` names it in the error)."""
    value = await read_json(request, limit, default=default)
    if not isinstance(value, dict):
        raise ValidationFailed(
            f"{what} must be a JSON object, got {type(value).__name__}",
            errors=[{"type": "dict_type", "loc": ["body"], "msg": "Input should be an object"}],
        )
    return value
