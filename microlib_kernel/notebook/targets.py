"""Where ``%%microlib`` cells publish, and what the line magics act on: a :class:`Target`.

A notebook session always has one target. It is the in-kernel host
(:class:`~.local.LocalTarget`) unless ``%microlib connect`` swapped in a host in another
process (:class:`~.remote.RemoteTarget`); ``%microlib disconnect`` swaps the in-kernel
one back. Both have the shape below, so the session and the magics never ask which
one they hold: each target decides what publishing a cell means there, and says what
it did in the words the user sees.

Every cell still runs in the notebook first (:mod:`.cells`); a target receives what
the cell defined *and* its source, and uses whichever it publishes from (the
in-kernel host registers the objects, a remote host runs the source).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..host import Published
    from ..sql_result import SqlResult
    from .displays import PublishedDisplay

#: How notebook publishes are signed in the deployment log (``GET /deploy``).
WHO = "notebook"

#: A kernel started with this variable publishes its cells to that host (``microlib deploy``).
TARGET_ENV = "MICROLIB_TARGET_URL"
#: While connected, each successful remote publish appends a JSON line to this file.
RECORD_ENV = "MICROLIB_DEPLOY_RECORD"


@runtime_checkable
class Target(Protocol):
    """A host that notebook cells publish to, and that the line magics read and drive.

    Errors of the host (a refused publish, an unknown model, an unreachable host) are
    raised as :class:`~microlib_kernel.errors.MicrolibError` with a one-line message.
    """

    @property
    def url(self) -> str | None:
        """The host's base URL (``None``: the in-kernel host is not serving yet)."""
        ...

    @property
    def api_url(self) -> str | None:
        """The API root (``None``: the in-kernel host is not serving yet)."""
        ...

    # -- publishing a cell --------------------------------------------------------------

    def publish_models(
        self, classes: list[type[Any]], source: str, version: str | None
    ) -> list[Published]:
        """Publish the model classes a cell defined (from ``source``): all, or none."""
        ...

    def published_display(
        self, published: list[Published], classes: list[type[Any]]
    ) -> PublishedDisplay:
        """What a model cell shows after :meth:`publish_models` (and what it set off)."""
        ...

    def publish_adapters(
        self, name: str, functions: Mapping[str, Callable[..., Any]], source: str
    ) -> str:
        """Bind an adapter cell's ``functions`` as ``name.function``; says what it did."""
        ...

    def publish_service(self, name: str, obj: Any, source: str) -> str:
        """Register a service cell's object as service ``name``; says what it did."""
        ...

    def publish_module(self, name: str, source: str) -> str:
        """Make a module cell (already importable in the kernel) known here; says so."""
        ...

    # -- versions and SQL ---------------------------------------------------------------

    def rollback(self, model: str, version: str | None) -> dict[str, Any]:
        """Make ``version`` (default: the one before) active; the model's ``/config`` entry."""
        ...

    def route(self, model: str, weights: dict[str, float]) -> dict[str, Any]:
        """Split traffic by weight; the model's ``/config`` entry."""
        ...

    def unpublish(self, model: str) -> dict[str, Any]:
        """Remove a model's endpoints (its data stays); its ``/config`` entry."""
        ...

    def sql(self, query: str, params: dict[str, Any] | None) -> SqlResult:
        """Run read-only SQL over the model tables."""
        ...

    # -- what the host holds --------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """``/config`` entries of the published models, each with its row ``count``
        (``None`` when it cannot be counted)."""
        ...

    def ports_report(self) -> list[dict[str, Any]]:
        """Every port of the active versions and its state (rows like ``host.ports.report()``)."""
        ...

    def keeps_serving(self, names: list[str]) -> str:
        """``"Order 1.0.2 keeps serving ..."`` for the models among ``names`` that serve
        (``""`` if none): what a refused cell leaves in place."""
        ...

    def endpoint_url(self, endpoint: str) -> str | None:
        """The URL of a model's collection as the user opens it (``None``: not serving)."""
        ...

    def status_title(self) -> str:
        """The heading of ``%microlib status``: which host, and where its API is."""
        ...

    def close(self) -> None:
        """Let go of the host (idempotent)."""
        ...
