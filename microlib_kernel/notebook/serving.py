"""How the in-kernel host serves its HTTP API from a notebook.

The first publish starts the server on the configured port or, while it is busy, on
the next free one; a started server is registered with the Jupyter server that runs
the kernel, so links can go through its proxy (:mod:`.jupyter`).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import MicrolibError
from .jupyter import JupyterPresence

if TYPE_CHECKING:
    from ..host import Host

#: How many ports after the configured one the first publish tries before giving up.
PORT_ATTEMPTS = 20


@dataclass
class ServeOutcome:
    """What :meth:`HostServing.serve` did: the URL and, if so, the port it skipped."""

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


class HostServing:
    """The HTTP API of the in-kernel host: started on demand, registered with Jupyter.

    Args:
        host: the in-kernel host (its ``settings``, ``url``, ``serve`` and
            ``stop_serving`` are used).
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self.last_serve: ServeOutcome | None = None
        self.jupyter = JupyterPresence.detect()  # registration with the Jupyter server

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
        settings = self.host.settings
        if self.host.url is not None:
            if port not in (None, 0) and not self.host.url.endswith(f":{port}"):
                raise MicrolibError(
                    f"already serving at {self.host.url}; %microlib stop first to change the port"
                )
            self.last_serve = ServeOutcome(self.host.url, started=False)
            return self.last_serve
        bind = bind or settings.bind
        if port is not None or settings.port == 0:
            chosen = settings.port if port is None else port
            self.last_serve = ServeOutcome(self.host.serve(chosen, bind))
            return self.last_serve
        busy: list[int] = []
        for candidate in range(settings.port, settings.port + PORT_ATTEMPTS):
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
            f"ports {settings.port}-{settings.port + PORT_ATTEMPTS - 1} on {bind} are "
            "all busy; choose one with %microlib serve --port N (0 picks a free one)"
        )

    def serve_after_publish(self) -> ServeOutcome | None:
        """Start serving on the first publish, unless ``MICROLIB_SERVE=0``."""
        if self.host.url is not None or not self.host.settings.serve:
            return None
        return self.serve()

    def stop(self) -> bool:
        """Stop the HTTP API; whether it was running."""
        was = self.host.url is not None
        self.jupyter.unregister()
        self.host.stop_serving()
        return was

    def browser_api_url(self) -> str | None:
        """The API root to show: through Jupyter's proxy under a Jupyter server that runs
        the microlib server extension, else the host's own URL (``None``: not serving)."""
        return self.jupyter.browser_api_url(self.host)

    def through_jupyter(self) -> str:
        """``"; from the browser: /microlib/proxy/<kernel>/microlib/api"`` when proxied."""
        browser = self.browser_api_url()
        return f"; from the browser: {browser}" if browser != self.host.api_url else ""


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
