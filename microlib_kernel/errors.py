"""The error tree of microlib-kernel.

Every error a user can cause is a :class:`MicrolibError`. Each class carries the HTTP
status the API answers with, so errors are translated in one place per entry point
(HTTP exception handlers, magics -> ``UsageError``, CLI -> exit code).
"""

from __future__ import annotations

from typing import Any


class MicrolibError(Exception):
    """Base class of every error microlib-kernel raises on purpose.

    Args:
        message: one clear sentence saying what is wrong and, where possible, what to do.
        **details: JSON-able details added to the HTTP error body.
    """

    status: int = 400
    #: What an HTTP client is told instead of ``message``, when the message quotes
    #: something only the owner should read (an adapter's own exception text).
    public: str | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": public message, **details}``."""
        return {"error": self.public or self.message, **self.details}


class NotFound(MicrolibError):
    """An unknown model, endpoint, id, relation, command or route."""

    status = 404


class ValidationFailed(MicrolibError):
    """Input did not validate. ``errors`` holds pydantic's error details (a list)."""

    status = 400

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None, **details: Any):
        self.errors: list[dict[str, Any]] = list(errors or [])
        super().__init__(message, **({"errors": self.errors} | details))


class BadQuery(MicrolibError):
    """A list filter, order or SQL statement that cannot be run."""

    status = 400


class QueryTimeout(BadQuery):
    """A SQL query ran past its time limit and was stopped."""

    status = 408


class TooManyRequests(MicrolibError):
    """A client sent more requests than its limit allows; ``retry_after`` says when to retry."""

    status = 429

    def __init__(self, message: str, retry_after: float = 1.0, **details: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, retry_after=round(retry_after, 3), **details)


class Vetoed(MicrolibError):
    """A hook (``on_delete``) refused the operation."""

    status = 400


class Forbidden(MicrolibError):
    """The caller's roles do not allow this command."""

    status = 403


class Unauthorized(MicrolibError):
    """A missing or wrong token."""

    status = 401


class Conflict(MicrolibError):
    """A write based on a stale revision: somebody else changed the instance first."""

    status = 409


class FlowElsewhere(Conflict):
    """Another live host runs this instance's flow (it holds the instance's lease)."""


class PortFailed(MicrolibError):
    """A port's adapter failed (after its retries)."""

    status = 502


class PortTimeout(PortFailed):
    """A port's adapter did not answer within its timeout (after its retries)."""

    status = 504


class BreakerOpen(PortFailed):
    """A port's circuit breaker is open and no fallback is configured."""

    status = 503


class PortUnbound(PortFailed):
    """A port cannot run: its adapter, or a service its adapter needs, is not registered."""

    status = 502


class DeployRefused(MicrolibError):
    """A publish or deploy was refused; nothing changed."""

    status = 400


class PayloadTooLarge(MicrolibError):
    """A request body over the configured limit."""

    status = 413


class DatasourceError(MicrolibError):
    """A datasource URL that cannot be used, or a store that cannot be opened."""

    status = 500


class DatasourceLocked(DatasourceError):
    """Another process holds the datasource's single-writer lock."""


class DatasourceUnavailable(DatasourceError):
    """A database server cannot be reached right now (down, restarting, out of connections).

    The request changed nothing that was acknowledged; retrying later is safe. HTTP
    answers 503 with a ``Retry-After`` header of ``retry_after`` seconds.
    """

    status = 503
    #: Seconds a client should wait before retrying (the ``Retry-After`` header).
    retry_after = 1


class ServiceUnavailable(MicrolibError):
    """The host is starting, draining or closed."""

    status = 503


__all__ = [
    "BadQuery",
    "BreakerOpen",
    "Conflict",
    "DatasourceError",
    "DatasourceLocked",
    "DatasourceUnavailable",
    "DeployRefused",
    "FlowElsewhere",
    "Forbidden",
    "MicrolibError",
    "NotFound",
    "PayloadTooLarge",
    "PortFailed",
    "PortTimeout",
    "PortUnbound",
    "QueryTimeout",
    "ServiceUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "ValidationFailed",
    "Vetoed",
]
