"""``MicrolibExtension``: the Jupyter server extension that shows and proxies kernel hosts.

Loaded by the Jupyter server (``jupyter_server_config.d/microlib_kernel.json``, shipped
in the wheel, enables it). It adds ``/microlib/hosts`` and ``/microlib/proxy/...``
(see :mod:`.handlers`), and writes ``microlib-server-<pid>.json`` in the runtime
directory, so the kernels it starts know to print URLs through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import httpx
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp

from ..version import __version__
from .handlers import handlers
from .registry import ServerRegistration, register_server, unregister_server


class MicrolibExtension(ExtensionApp):
    """The ``microlib_kernel`` server extension."""

    name = "microlib_kernel"
    description = "MicroLib: list and proxy the in-kernel hosts of running notebooks"
    version = __version__
    load_other_extensions = True

    @property
    def server(self) -> ServerApp:
        assert self.serverapp is not None  # set when the extension is linked
        return self.serverapp

    def initialize_settings(self) -> None:
        self.client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        self.relays: set[asyncio.Future[None]] = set()
        self.stopping = False
        self.pid = os.getpid()
        register_server(ServerRegistration(self.pid, self.server.base_url), self.runtime_path)

    def initialize_handlers(self) -> None:
        self.handlers.extend(handlers())

    @property
    def runtime_path(self) -> Path:
        """Where kernels register their hosts: the server's runtime directory."""
        return Path(self.server.runtime_dir)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        # The URL is known once the server listens; it is informational only.
        with contextlib.suppress(Exception):
            register_server(
                ServerRegistration(self.pid, serverapp.base_url, serverapp.connection_url),
                self.runtime_path,
            )

    async def kernels_by_id(self) -> dict[str, dict[str, Any]]:
        """``kernel_id -> {name, execution_state, path}`` for this server's kernels."""
        out: dict[str, dict[str, Any]] = {}
        kernel_manager = self.server.kernel_manager
        for kernel_id in list(kernel_manager.list_kernel_ids()):
            with contextlib.suppress(Exception):
                model = kernel_manager.kernel_model(kernel_id)
                out[kernel_id] = {
                    "name": model.get("name"),
                    "execution_state": model.get("execution_state"),
                    "path": None,
                }
        with contextlib.suppress(Exception):
            for session in await self.server.session_manager.list_sessions():
                kernel = session.get("kernel") or {}
                if kernel.get("id") in out:
                    out[kernel["id"]]["path"] = session.get("path")
        return out

    async def stop_extension(self) -> None:
        self.stopping = True
        for relay in list(self.relays):
            relay.cancel()
        await self.client.aclose()
        unregister_server(self.pid, self.runtime_path)
