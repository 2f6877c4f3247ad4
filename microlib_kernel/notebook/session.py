"""``NotebookSession``: the in-kernel host of one IPython shell, and how it serves.

The magics are thin: they parse a line, call the session or its host, and display.
What is more than that -- starting the HTTP server on the first publish on the next
free port, the one-line banner, the dashboards to stop at unload -- lives here.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import MicrolibError
from .jupyter import JupyterPresence

if TYPE_CHECKING:
    from ..host import Host, Published
    from ..store.sql import SqlResult
    from .remote import RemoteTarget

#: How notebook publishes are signed in the deployment log (``GET /deploy``).
WHO = "notebook"

#: A kernel started with this variable publishes its cells to that host (``microlib deploy``).
TARGET_ENV = "MICROLIB_TARGET_URL"
#: While connected, each successful remote publish appends a JSON line to this file.
RECORD_ENV = "MICROLIB_DEPLOY_RECORD"

#: How many ports after the configured one the first publish tries before giving up.
PORT_ATTEMPTS = 20


@dataclass
class ServeOutcome:
    """What :meth:`NotebookSession.serve` did: the URL and, if so, the port it skipped."""

    url: str
    busy: list[int] = field(default_factory=list)
    started: bool = True

    def message(self) -> str:
        if not self.started:
            return f"already serving at {self.url}"
        if self.busy:
            ports = ", ".join(str(p) for p in self.busy)
            plural = "s" if len(self.busy) > 1 else ""
            return f"port{plural} {ports} busy: serving at {self.url} instead"
        return f"serving at {self.url}"


class NotebookSession:
    """The host of one shell, with what the notebook adds around it.

    Args:
        host: the in-kernel host (the session closes it).
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self.closers: list[Any] = []  # dashboards and other live displays to stop at close
        self.last_serve: ServeOutcome | None = None
        #: While set (``%microlib connect``), cells publish to this host, not to ``host``.
        self.remote: RemoteTarget | None = None
        self.jupyter = JupyterPresence.detect()  # registration with the Jupyter server

    @classmethod
    def open(cls, cwd: str | None = None, datasource: str | None = None) -> NotebookSession:
        """Create a session with a new :class:`Host` from the settings chain.

        Args:
            cwd: the folder relative datasource paths resolve in (default: the current one).
            datasource: overrides the settings' datasource.
        """
        from ..host import Host

        settings = Settings.load(cwd=cwd if cwd is not None else os.getcwd(), datasource=datasource)
        return cls(Host(settings=settings))

    # -- a remote target ----------------------------------------------------------------

    def connect(
        self,
        url: str,
        token: str | None = None,
        *,
        check: bool = True,
        api_token: str | None = None,
        cafile: str | None = None,
    ) -> RemoteTarget:
        """Publish to the host at ``url`` from now on (``%microlib connect``).

        ``token`` is the deploy token; ``api_token`` and ``cafile`` as in
        :meth:`RemoteTarget.connect`.

        Raises:
            MicrolibError: it does not answer, or refuses the token.
        """
        from .remote import RemoteTarget

        target = RemoteTarget.connect(
            url,
            token,
            cwd=self.settings.cwd or None,
            check=check,
            api_token=api_token,
            cafile=cafile,
        )
        self.disconnect()
        self.remote = target
        return target

    def disconnect(self) -> str | None:
        """Publish to the in-kernel host again; the URL left, if any."""
        target, self.remote = self.remote, None
        if target is None:
            return None
        target.close()
        return target.url

    # -- serving ----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.host.settings

    def serve(self, port: int | None = None, bind: str | None = None) -> ServeOutcome:
        """Start the HTTP API (idempotent) and register it with the Jupyter server.

        With ``port`` given, only that port is tried. Without it, the configured port is
        tried first, then the next ones while they are busy.

        Raises:
            MicrolibError: the server cannot start (the message says why).
        """
        outcome = self._serve(port, bind)
        if outcome.started:
            self.jupyter.register(self.host)
        return outcome

    def _serve(self, port: int | None, bind: str | None) -> ServeOutcome:
        if self.host.url is not None:
            if port not in (None, 0) and not self.host.url.endswith(f":{port}"):
                raise MicrolibError(
                    f"already serving at {self.host.url}; %microlib stop first to change the port"
                )
            self.last_serve = ServeOutcome(self.host.url, started=False)
            return self.last_serve
        bind = bind or self.settings.bind
        if port is not None or self.settings.port == 0:
            chosen = self.settings.port if port is None else port
            self.last_serve = ServeOutcome(self.host.serve(chosen, bind))
            return self.last_serve
        busy: list[int] = []
        for candidate in range(self.settings.port, self.settings.port + PORT_ATTEMPTS):
            if not port_free(bind, candidate):
                busy.append(candidate)
                continue
            try:
                url = self.host.serve(candidate, bind)
            except MicrolibError:
                if port_free(bind, candidate):
                    raise
                busy.append(candidate)  # taken between the probe and the bind
                continue
            self.last_serve = ServeOutcome(url, busy)
            return self.last_serve
        raise MicrolibError(
            f"ports {self.settings.port}-{self.settings.port + PORT_ATTEMPTS - 1} on {bind} are "
            "all busy; choose one with %microlib serve --port N (0 picks a free one)"
        )

    def serve_after_publish(self) -> ServeOutcome | None:
        """Start serving on the first publish, unless ``MICROLIB_SERVE=0``."""
        if self.host.url is not None or not self.settings.serve:
            return None
        return self.serve()

    def stop(self) -> bool:
        """Stop the HTTP API; whether it was running."""
        was = self.host.url is not None
        self.jupyter.unregister()
        self.host.stop_serving()
        return was

    # -- publishing -----------------------------------------------------------------

    def publish_models(self, classes: list[type[Any]], version: str | None) -> list[Published]:
        """Publish model classes together: all of them, or none."""
        return self.host.loop.run(self.host.publish_async(classes, version=version, who=WHO))

    def after_publish(self, published: list[Published], classes: list[type[Any]]) -> Any:
        """Serve if this was the first publish; a display of what was published."""
        from .displays import PublishedDisplay, published_models

        note = ""
        try:
            outcome = self.serve_after_publish()
            note = f"API {outcome.message()}{self.through_jupyter()}" if outcome else ""
        except MicrolibError as exc:
            note = f"published, but the API did not start: {exc.message}"
        if self.host.url is None and not note:
            note = "API not serving (MICROLIB_SERVE=0): %microlib serve starts it"
        urls = {p.endpoint: self.endpoint_url(p.endpoint) for p in published if p.endpoint}
        api = self.browser_api_url()
        docs = f"{api}/openapi.json" if api else None
        return PublishedDisplay(published_models(published, classes, urls), docs, note)

    def after_remote_publish(self, published: list[Published], classes: list[type[Any]]) -> Any:
        """A display of what a connected cell published on the remote host."""
        from .displays import PublishedDisplay, published_models

        assert self.remote is not None
        urls: dict[str, str | None] = {
            p.endpoint: self.remote.endpoint_url(p.endpoint) for p in published if p.endpoint
        }
        note = f"deployed to {self.remote.url} (%microlib disconnect publishes here again)"
        models = published_models(published, classes, urls)
        return PublishedDisplay(models, f"{self.remote.api_url}/openapi.json", note)

    def record(self, kind: str, names: list[str]) -> None:
        """Log an adapter, service or module cell in the host's deployment log."""
        from ..host.deploy import Deployment

        entry = Deployment(dt.datetime.now(dt.UTC), kind, names, [None] * len(names), WHO)

        async def append() -> None:
            self.host.deployments.append(entry)

        self.host.loop.run(append())

    # -- versions and SQL, on the target host -------------------------------------------

    def rollback(self, model: str, version: str | None) -> dict[str, Any]:
        if self.remote is not None:
            return self.remote.client.rollback(model, version)
        return self.host.loop.run(self.host.rollback_async(model, version, who=WHO))

    def route(self, model: str, weights: dict[str, float]) -> dict[str, Any]:
        if self.remote is not None:
            return self.remote.client.route(model, weights)
        return self.host.loop.run(self.host.route_async(model, weights, who=WHO))

    def unpublish(self, model: str) -> dict[str, Any]:
        """Unpublish ``model``; returns its ``/config`` entry."""
        if self.remote is not None:
            return self.remote.client.unpublish(model)

        async def unpublish() -> dict[str, Any]:
            entry = await self.host.unpublish_async(model, who=WHO)
            return self.host.config_entry(entry)

        return self.host.loop.run(unpublish())

    def sql(self, query: str, params: dict[str, Any] | None) -> SqlResult:
        if self.remote is not None:
            return self.remote.sql(query, params)
        return self.host.sql(query, params)

    # -- what the host holds (read on its loop, where its state lives) ------------------

    def models(self) -> list[dict[str, Any]]:
        """``/config`` entries of the published models, each with its row ``count``
        (of the remote host while connected)."""
        if self.remote is not None:
            return self.remote.models()
        return self.host.loop.run(self.models_async())

    async def models_async(self) -> list[dict[str, Any]]:
        """:meth:`models` on the host loop."""
        out = []
        for entry in self.host.registry.entries():
            item = self.host.config_entry(entry)
            try:
                item["count"] = await self.host.repository(entry.endpoint).count({})
            except MicrolibError:
                item["count"] = None
            out.append(item)
        return out

    def ports_report(self) -> list[dict[str, Any]]:
        """Every port of the active versions and what keeps it from running (if anything).

        Empty when the host's port runner has no report (a build without ports).
        """
        if self.remote is not None:
            return self.remote.ports_report(self.remote.models())
        report = getattr(self.host.ports, "report", None)
        if report is None:
            return []

        async def rows() -> list[dict[str, Any]]:
            return list(report())

        return self.host.loop.run(rows())

    def recent_events(self, pattern: str | None, n: int) -> list[Any]:
        """The last ``n`` events matching ``pattern`` (oldest first)."""

        async def recent() -> list[Any]:
            return self.host.events.recent(pattern, n)

        return self.host.loop.run(recent())

    def serving(self, names: list[str]) -> str:
        """``"Order 1.0.2 keeps serving"`` for the models among ``names`` that serve."""
        if self.remote is not None:
            return self.remote.serving(names)

        async def active() -> list[str]:
            found = []
            for name in names:
                entry = self.host.registry.find(name)
                if entry is not None and entry.active:
                    found.append(f"{entry.name} {entry.active}")
            return found

        serving = self.host.loop.run(active())
        return f"{', '.join(serving)} keeps serving" if serving else ""

    # -- text -------------------------------------------------------------------------

    def browser_api_url(self) -> str | None:
        """The API root to show: through Jupyter's proxy under a Jupyter server that runs
        the microlib server extension, else the host's own URL (``None``: not serving)."""
        return self.jupyter.browser_api_url(self.host)

    def through_jupyter(self) -> str:
        """``"; from the browser: /microlib/proxy/<kernel>/microlib/api"`` when proxied."""
        browser = self.browser_api_url()
        return f"; from the browser: {browser}" if browser != self.host.api_url else ""

    def endpoint_url(self, endpoint: str) -> str | None:
        if self.remote is not None:
            return self.remote.endpoint_url(endpoint)
        api = self.browser_api_url()
        return f"{api}/models/{endpoint}" if api else None

    def banner(self) -> str:
        """The one line printed when the extension loads."""
        data = self.host.datasource.describe()
        if self.host.url:
            api = f"API at {self.host.api_url}"
        elif self.settings.serve:
            where = "a free port" if self.settings.port == 0 else f"port {self.settings.port}"
            api = f"API starts on the first publish ({self.settings.bind}, {where})"
        else:
            api = "API off (MICROLIB_SERVE=0; %microlib serve starts it)"
        return f"microlib: {data} · {api} · %microlib help"

    def close(self) -> None:
        """Stop live displays, the server and the host (idempotent)."""
        self.disconnect()
        closers, self.closers = self.closers, []
        for closer in closers:
            try:
                closer.close()
            except Exception:  # a broken widget must not keep the host open
                pass
        self.jupyter.unregister()
        self.host.close()


def port_free(bind: str, port: int) -> bool:
    """Whether ``bind:port`` can be bound right now (a probe; the server binds for real)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # The same option uvicorn sets, so a port in TIME_WAIT counts as free for both.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise MicrolibError(f"cannot bind {bind}:{port}: {exc.strerror}") from None
    return True
