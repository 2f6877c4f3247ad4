"""The in-kernel host as a :class:`~.targets.Target`: what cells publish to by default.

Model cells publish their classes themselves (so a model can use anything the notebook
defined before); adapter and service cells register the objects they defined; each is
signed ``who="notebook"`` in the host's deployment log. The first publish starts the
HTTP API (:class:`~.serving.HostServing`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import MicrolibError
from .targets import WHO

if TYPE_CHECKING:
    from ..host import Host, Published
    from ..sql_result import SqlResult
    from .displays import PublishedDisplay
    from .serving import HostServing


class LocalTarget:
    """Cells published to the in-kernel host, line magics acting on it.

    Args:
        host: the in-kernel host (closed by :meth:`close`).
        serving: how that host serves (started by the first publish).
    """

    def __init__(self, host: Host, serving: HostServing) -> None:
        self.host = host
        self.serving = serving

    @property
    def url(self) -> str | None:
        """The host's base URL (``None``: not serving)."""
        return self.host.url

    @property
    def api_url(self) -> str | None:
        return self.host.api_url

    # -- publishing a cell --------------------------------------------------------------

    def publish_models(
        self, classes: list[type[Any]], source: str, version: str | None
    ) -> list[Published]:
        """Publish the classes themselves (``source`` is not run a second time)."""
        return self.host.publish(classes, version=version, who=WHO)

    def published_display(
        self, published: list[Published], classes: list[type[Any]]
    ) -> PublishedDisplay:
        """Serve if this was the first publish; a display of what was published."""
        from .displays import PublishedDisplay, published_models

        note = ""
        try:
            outcome = self.serving.serve_after_publish()
            note = f"API {outcome.message()}{self.serving.through_jupyter()}" if outcome else ""
        except MicrolibError as exc:
            note = f"published, but the API did not start: {exc.message}"
        if self.host.url is None and not note:
            note = "API not serving (MICROLIB_SERVE=0): %microlib serve starts it"
        urls = {p.endpoint: self.endpoint_url(p.endpoint) for p in published if p.endpoint}
        api = self.serving.browser_api_url()
        docs = f"{api}/openapi.json" if api else None
        return PublishedDisplay(published_models(published, classes, urls), docs, note)

    def publish_adapters(
        self, name: str, functions: Mapping[str, Callable[..., Any]], source: str
    ) -> str:
        for fname, fn in functions.items():
            self.host.adapters.register(f"{name}.{fname}", fn)
        bound = [f"{name}.{f}" for f in functions]
        self._record("adapter", bound)
        return f"adapters bound: {', '.join(bound)} (ports look them up at call time)"

    def publish_service(self, name: str, obj: Any, source: str) -> str:
        self.host.services.register(name, obj)
        self._record("service", [name])
        return f"service {name} registered: {type(obj).__name__} (injected as {name}=)"

    def publish_module(self, name: str, source: str) -> str:
        # The kernel is this host's process: the cell's module is installed already.
        self._record("module", [name])
        return f"module microlib_modules.{name} installed (also bound as {name})"

    def _record(self, kind: str, names: list[str]) -> None:
        """Log an adapter, service or module cell in the host's deployment log."""
        from ..host.deploy import Deployment

        entry = Deployment(self.host.clock.now(), kind, names, [None] * len(names), WHO)

        async def append() -> None:
            self.host.deployments.append(entry)

        self.host.loop.run(append())

    # -- versions and SQL ---------------------------------------------------------------

    def rollback(self, model: str, version: str | None) -> dict[str, Any]:
        return self.host.rollback(model, version, who=WHO)

    def route(self, model: str, weights: dict[str, float]) -> dict[str, Any]:
        return self.host.route(model, weights, who=WHO)

    def unpublish(self, model: str) -> dict[str, Any]:
        async def unpublish() -> dict[str, Any]:
            entry = await self.host.unpublish_async(model, who=WHO)
            return self.host.config_entry(entry)

        return self.host.loop.run(unpublish())

    def sql(self, query: str, params: dict[str, Any] | None) -> SqlResult:
        return self.host.sql(query, params)

    # -- what the host holds (read on its loop, where its state lives) ------------------

    def models(self) -> list[dict[str, Any]]:
        return self.host.loop.run(self.models_async())

    async def models_async(self) -> list[dict[str, Any]]:
        """:meth:`models` on the host loop (what the live dashboard reads)."""
        out = []
        for entry in self.host.registry.entries():
            item = self.host.config_entry(entry)
            try:
                # Every version of a model shares its table: the active one counts it.
                item["count"] = await self.host.model(entry.name).count()
            except MicrolibError:
                item["count"] = None
            out.append(item)
        return out

    def ports_report(self) -> list[dict[str, Any]]:
        """Empty when the host's port runner has no report (a build without ports)."""
        report = getattr(self.host.ports, "report", None)
        if report is None:
            return []

        async def rows() -> list[dict[str, Any]]:
            return list(report())

        return self.host.loop.run(rows())

    def keeps_serving(self, names: list[str]) -> str:
        async def active() -> list[str]:
            found = []
            for name in names:
                entry = self.host.registry.find(name)
                if entry is not None and entry.active:
                    found.append(f"{entry.name} {entry.active}")
            return found

        found = self.host.loop.run(active())
        return f"{', '.join(found)} keeps serving" if found else ""

    def endpoint_url(self, endpoint: str) -> str | None:
        """Through Jupyter's proxy when the kernel's Jupyter server has the extension."""
        api = self.serving.browser_api_url()
        return f"{api}/models/{endpoint}" if api else None

    def status_title(self) -> str:
        api = self.host.api_url or "not serving (%microlib serve)"
        return (
            f"microlib host · {self.host.datasource.describe()} · API {api}"
            f"{self.serving.through_jupyter()}"
        )

    def close(self) -> None:
        """Unregister from Jupyter and close the host, which stops its server (idempotent)."""
        self.serving.jupyter.unregister()
        self.host.close()

    def __repr__(self) -> str:
        return f"<LocalTarget {self.host.datasource.describe()}>"
