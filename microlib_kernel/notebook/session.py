"""``NotebookSession``: the in-kernel host of one IPython shell, and where cells publish.

The magics are thin: they parse a line, call the session, its target or its host, and
display. What is more than that lives beside the session: where ``%%microlib`` cells
publish (:attr:`NotebookSession.target`, the in-kernel host or, after ``%microlib
connect``, a remote one), how the in-kernel host serves (:mod:`.serving`), the
one-line banner and the dashboards to stop at unload.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..config import Settings
from .local import LocalTarget
from .serving import HostServing, ServeOutcome

if TYPE_CHECKING:
    from ..host import Host
    from .remote import RemoteTarget
    from .targets import Target


class NotebookSession:
    """The host of one shell, with what the notebook adds around it.

    Args:
        host: the in-kernel host (the session closes it).
    """

    def __init__(self, host: Host) -> None:
        self.host = host
        self.closers: list[Any] = []  # dashboards and other live displays to stop at close
        self.serving = HostServing(host)
        #: The in-kernel host as a target (``serve``, ``events``, ``dashboard`` act on it).
        self.local = LocalTarget(host, self.serving)
        #: Where cells publish and ``status``, ``models``, ``rollback``... act: ``local``,
        #: or the remote host ``%microlib connect`` swapped in.
        self.target: Target = self.local

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
        from .remote import RemoteTarget  # its HTTP client loads when a notebook connects

        target = RemoteTarget.connect(
            url,
            token,
            cwd=self.settings.cwd or None,
            check=check,
            api_token=api_token,
            cafile=cafile,
        )
        self.disconnect()
        self.target = target
        return target

    def disconnect(self) -> str | None:
        """Publish to the in-kernel host again; the URL left, if any."""
        target, self.target = self.target, self.local
        if target is self.local:
            return None
        target.close()
        return target.url

    # -- the in-kernel host ---------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.host.settings

    def serve(self, port: int | None = None, bind: str | None = None) -> ServeOutcome:
        """Start the in-kernel host's HTTP API (:meth:`HostServing.serve`)."""
        return self.serving.serve(port, bind)

    def stop(self) -> bool:
        """Stop the in-kernel host's HTTP API; whether it was running."""
        return self.serving.stop()

    def recent_events(self, pattern: str | None, n: int) -> list[Any]:
        """The last ``n`` events of the in-kernel host matching ``pattern`` (oldest first)."""

        async def recent() -> list[Any]:
            return self.host.events.recent(pattern, n)

        return self.host.loop.run(recent())

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
        self.local.close()
