"""How the in-kernel host shows itself to the Jupyter server that runs the kernel.

When the host starts serving, it registers itself in the Jupyter runtime directory
(kernel id, URL, API root, pid, where its deploy token is); when it stops, it
unregisters. If the kernel's Jupyter server runs the microlib server extension (it
left ``microlib-server-<JPY_PARENT_PID>.json`` there), the magics print links through
the server's proxy (``<base_url>microlib/proxy/<kernel_id>/microlib/api/...``), which
the browser can open wherever Jupyter runs (JupyterHub, Binder); otherwise they
print the host's local URL.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..host.tokens import TOKEN_FILE
from ..jupyter_server import registry
from ..jupyter_server.registry import HostRegistration, ServerRegistration

if TYPE_CHECKING:
    from ..host import Host

log = logging.getLogger("microlib_kernel.notebook")


@dataclass
class JupyterPresence:
    """The registration of one kernel's host, and the proxy path the browser uses.

    Args:
        kernel_id: the kernel's id (``None`` outside a Jupyter kernel: nothing is
            registered and URLs stay local).
        directory: the runtime directory (default: Jupyter's).
    """

    kernel_id: str | None
    directory: Path | None = None
    registered: HostRegistration | None = field(default=None, init=False)
    server: ServerRegistration | None = field(default=None, init=False)

    @classmethod
    def detect(cls) -> JupyterPresence:
        return cls(registry.current_kernel_id())

    def register(self, host: Host) -> None:
        """Register ``host`` (serving) and look for the server extension that started us."""
        if self.kernel_id is None or host.url is None:
            return
        settings = host.settings
        token_env = token_file = None
        if settings.deploy_token is None:
            token_file = str((settings.home_path / TOKEN_FILE).resolve())
        elif os.environ.get(registry.TOKEN_ENV) == settings.deploy_token:
            token_env = registry.TOKEN_ENV
        from ..version import __version__

        reg = HostRegistration(
            kernel_id=self.kernel_id,
            url=host.url,
            api_root=settings.api_root,
            pid=os.getpid(),
            token_file=token_file,
            token_env=token_env,
            cwd=settings.cwd,
            started=dt.datetime.now(dt.UTC).isoformat(),
            version=__version__,
            auth=settings.auth_enabled,
        )
        try:
            registry.register_host(reg, self.directory)
            self.server = registry.parent_server(directory=self.directory)
        except OSError as exc:  # a read-only runtime dir must not stop the API
            log.warning("cannot register the host with Jupyter: %s", exc)
            return
        self.registered = reg

    def unregister(self) -> None:
        """Remove the registration (idempotent)."""
        reg, self.registered = self.registered, None
        self.server = None
        if reg is not None:
            try:
                registry.unregister_host(reg, self.directory)
            except OSError as exc:
                log.warning("cannot unregister the host from Jupyter: %s", exc)

    def browser_api_url(self, host: Host) -> str | None:
        """The API root as the browser reaches it: through Jupyter's proxy when it can."""
        if host.api_url is None:
            return None
        if self.server is not None and self.registered is not None:
            return self.server.proxy_path(self.registered.kernel_id) + host.settings.api_root
        return host.api_url
