"""Lambda events in, Lambda responses out: Mangum, with the ASGI cycle on the host loop.

Mangum does the part that must follow AWS exactly: recognising an API Gateway REST
(payload 1.0), HTTP API or Function URL (payload 2.0) or ALB event, turning it into an
ASGI scope and body (base64, multi-value headers and query strings, cookies), and
turning the response back into the event's own response format.

What we change is where the application runs. Mangum runs it with
``loop.run_until_complete`` on an event loop in the handler's thread. Our app's
handlers touch host state -- the registry, the repositories, the cache -- which lives
on the host loop, in the host's own thread (``host/loop.py``), exactly as the uvicorn
server runs on that loop. So :class:`HostLoopMangum` keeps Mangum's event handling
and runs Mangum's own ``HTTPCycle`` as a coroutine on the host loop
(``host.loop.run``): one thread hop per invocation, no second loop, no lifespan cycle
per invocation, and the same code path as the HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from mangum import Mangum
from mangum.protocols.http import HTTPCycle
from mangum.types import ASGI, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..domain.ids import new_id
from ..errors import MicrolibError

if TYPE_CHECKING:
    from ..host.host import Host

log = logging.getLogger("microlib_kernel.serverless")

#: Seconds kept back from the invocation's remaining time to answer a timeout ourselves.
TIME_MARGIN = 0.5
#: Seconds of the deadline kept back when waiting for event handlers after a response.
_SETTLE_MARGIN = 0.25
#: The request deadline when the context does not give one (API Gateway's limit is 29 s).
DEFAULT_DEADLINE = 29.0

_REASONS = {
    400: "Bad Request",
    503: "Service Unavailable",
    404: "Not Found",
    500: "Internal Server Error",
    501: "Not Implemented",
    504: "Gateway Timeout",
}


class HostLoopMangum(Mangum):
    """Mangum whose ASGI cycle runs on ``host``'s loop instead of a loop of its own.

    Args:
        app: the ASGI app (``create_app(host.api)``, wrapped by :class:`LambdaPaths`).
        host: the host whose loop runs the app.
        api_gateway_base_path: a prefix to strip from every path (a custom domain's
            base path mapping); HTTP API stage prefixes are stripped by
            :class:`LambdaPaths` on their own.
        settle: after each response, wait (within the invocation's time) for event
            handlers and port flows it started, so they finish before Lambda freezes
            the instance.
    """

    def __init__(
        self,
        app: ASGIApp,
        host: Host,
        *,
        api_gateway_base_path: str = "/",
        settle: bool = True,
    ) -> None:
        self.host = host
        self.settle = settle
        super().__init__(
            cast(ASGI, app), lifespan="off", api_gateway_base_path=api_gateway_base_path
        )

    def _setup_event_loop(self) -> None:
        # Mangum makes an event loop for the handler thread; the host loop does the
        # work here, so none is needed (and none is left behind).
        return None

    def __call__(self, event: Any, context: Any) -> dict[str, Any]:
        """Answer one invocation; never raises (a bad event is a 400 response)."""
        try:
            return self._answer(event, context)
        except Exception as exc:  # the last line of defence: no traceback leaves
            error_id = new_id()
            log.error("invocation failed (error id %s)", error_id, exc_info=exc)
            body = {"error": "internal error", "error_type": "InternalError", "error_id": error_id}
            return error_response(event, 500, body)

    def _answer(self, event: Any, context: Any) -> dict[str, Any]:
        if not isinstance(event, dict):
            return error_response(
                event, 400, _bad_event(f"the event is a {type(event).__name__}, not an object")
            )
        try:
            handler = self.infer(event, context)
        except RuntimeError:
            return error_response(
                event,
                400,
                _bad_event(
                    "not an HTTP event: expected an API Gateway REST or HTTP API, ALB or "
                    "Function URL event"
                ),
            )
        try:
            scope, body = handler.scope, handler.body
        except Exception as exc:
            return error_response(event, 400, _bad_event(f"{_event_kind(event)}: {_why(exc)}"))
        deadline = _deadline(context)
        try:
            response = self.host.loop.run(self._cycle(scope, body, deadline), timeout=deadline)
        except TimeoutError:
            body_ = {
                "error": f"the request did not finish within {deadline:.1f} s",
                "error_type": "GatewayTimeout",
            }
            return error_response(event, 504, body_)
        except MicrolibError as exc:  # the host is closed (ServiceUnavailable)
            return error_response(
                event, exc.status, {**exc.to_dict(), "error_type": type(exc).__name__}
            )
        return handler(response)

    async def _cycle(self, scope: Scope, body: bytes, deadline: float) -> Response:
        """Mangum's HTTP cycle, on the host loop; then let handlers it started finish."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        cycle = HTTPCycle(scope, body)
        await cycle.run(self.app)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The invocation gave up (its deadline passed); HTTPCycle.run swallows the
            # cancellation, so stop here rather than go on to settle.
            raise asyncio.CancelledError
        left = deadline - (loop.time() - started) - _SETTLE_MARGIN
        if self.settle and left > 0:
            try:
                await self.host.idle(timeout=left)
            except TimeoutError:
                log.warning("event handlers were still running when the response was sent")
        return Response(status=cycle.status, headers=cycle.headers, body=cycle.body)


def _deadline(context: Any) -> float:
    remaining: Callable[[], int] | None = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return DEFAULT_DEADLINE
    try:
        seconds = float(remaining()) / 1000.0
    except (TypeError, ValueError):
        return DEFAULT_DEADLINE
    return max(0.5, seconds - TIME_MARGIN)


def _bad_event(message: str) -> dict[str, Any]:
    return {"error": f"malformed Lambda event: {message}", "error_type": "BadEvent"}


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}"
    if type(exc).__name__ == "Error" and type(exc).__module__ == "binascii":
        return "the body is marked isBase64Encoded but is not valid base64"
    return f"{type(exc).__name__}: {exc}"


def _event_kind(event: dict[str, Any]) -> str:
    context = event.get("requestContext")
    if isinstance(context, dict) and "elb" in context:
        return "ALB event"
    if event.get("version") == "2.0":
        return "HTTP API / Function URL event (payload 2.0)"
    return "API Gateway REST event (payload 1.0)"


def error_response(event: Any, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """A JSON error in the response format the event's source expects.

    Every source accepts ``statusCode``, ``headers``, ``body`` and ``isBase64Encoded``;
    an ALB also wants ``statusDescription``, and ``multiValueHeaders`` instead of
    ``headers`` when its target group has multi-value headers on (the event then
    carries ``multiValueHeaders``).
    """
    headers = {"content-type": "application/json"}
    out: dict[str, Any] = {
        "statusCode": status,
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }
    context = event.get("requestContext") if isinstance(event, dict) else None
    multi = isinstance(event, dict) and "multiValueHeaders" in event
    if isinstance(context, dict) and "elb" in context:
        out["statusDescription"] = f"{status} {_REASONS.get(status, '')}".strip()
    if multi:
        out["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
        if not (isinstance(context, dict) and "elb" in context):
            out["headers"] = headers  # REST APIs accept both; ALB wants one of them
    else:
        out["headers"] = headers
    return out


class LambdaPaths:
    """ASGI middleware for what a path means behind API Gateway.

    * An HTTP API stage other than ``$default`` prefixes every path with
      ``/STAGE`` (the REST API does not put its stage in ``path``): the prefix is
      removed before routing.
    * The URL a client used may carry a prefix the app never sees (a REST API stage,
      an HTTP API stage, a custom domain's base path). Responses naming a path of
      the API are rewritten to carry it: ``Location`` headers (created models,
      redirects to the docs) and the two documents that embed absolute paths, the
      docs page and ``openapi.json``'s ``servers``.
    * ``GET /events`` streams forever, and Lambda responses are buffered: it answers
      501 instead of holding the invocation until it times out.
    """

    def __init__(self, app: ASGIApp, api_root: str) -> None:
        self.app = app
        self.root = api_root.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        event = scope.get("aws.event") or {}
        scope = {**scope, "path": _strip_stage(event, scope["path"])}
        path = scope["path"]
        if path == f"{self.root}/events":
            await _not_on_lambda(scope, receive, send)
            return
        prefix = _external_prefix(event, path)
        if not prefix:
            await self.app(scope, receive, send)
            return
        rewrite_body = scope["method"] != "HEAD" and path in (
            f"{self.root}/docs",
            f"{self.root}/openapi.json",
        )
        await self.app(scope, receive, _Prefixer(send, prefix, self.root, rewrite_body).send)


def _strip_stage(event: dict[str, Any], path: str) -> str:
    context = event.get("requestContext")
    if event.get("version") != "2.0" or not isinstance(context, dict):
        return path
    stage = context.get("stage")
    if not isinstance(stage, str) or not stage or stage == "$default":
        return path
    marker = f"/{stage}"
    if path == marker:
        return "/"
    return path[len(marker) :] if path.startswith(marker + "/") else path


def _external_prefix(event: dict[str, Any], path: str) -> str:
    """What the client's path had before ``path`` (``/prod``), or ``""``."""
    context = event.get("requestContext")
    external: Any = None
    if event.get("version") == "2.0":
        external = event.get("rawPath")
    elif isinstance(context, dict) and "elb" not in context:
        external = context.get("path")
    if not isinstance(external, str):
        return ""
    external = unquote(external)
    if path == "/":
        return external.rstrip("/")
    if not external.endswith(path) or external == path:
        return ""
    return external[: -len(path)].rstrip("/")


class _Prefixer:
    """Rewrites one response's absolute API paths to carry ``prefix``."""

    def __init__(self, send: Send, prefix: str, root: str, rewrite_body: bool) -> None:
        self._send = send
        self.prefix = prefix
        self.root = root
        self.rewrite_body = rewrite_body
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, self.prefix.encode() + v if k.lower() == b"location" and v[:1] == b"/" else v)
                for k, v in message.get("headers", [])
            ]
            message = {**message, "headers": headers}
            if self.rewrite_body:
                self.start = message  # sent with the rewritten body (its length changes)
                return
        elif message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = self._rewrite(b"".join(self.chunks))
            headers = [
                (k, str(len(body)).encode() if k.lower() == b"content-length" else v)
                for k, v in self.start["headers"]
            ]
            await self._send({**self.start, "headers": headers})
            message = {"type": "http.response.body", "body": body, "more_body": False}
        await self._send(message)

    def _rewrite(self, body: bytes) -> bytes:
        assert self.start is not None
        ctype = dict(self.start["headers"]).get(b"content-type", b"")
        if ctype.startswith(b"text/html") and self.root:
            # The docs page loads its assets and openapi.json from "ROOT/...".
            return body.replace(f'"{self.root}/'.encode(), f'"{self.prefix}{self.root}/'.encode())
        if ctype.startswith(b"application/json"):
            try:
                document = json.loads(body)
            except ValueError:
                return body
            if isinstance(document, dict) and isinstance(document.get("servers"), list):
                document["servers"] = [{"url": self.prefix or "/"}]
                return json.dumps(document, separators=(",", ":")).encode()
        return body


async def _not_on_lambda(scope: Scope, receive: Receive, send: Send) -> None:
    body = json.dumps(
        {
            "error": "event streams (GET /events) are not available on AWS Lambda: its "
            "responses are buffered, so a stream would only end when the invocation times "
            "out; subscribe to events in a model or adapter instead",
            "error_type": "NotImplemented",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 501,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
