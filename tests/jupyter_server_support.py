"""pytest-jupyter's server fixtures, for the test modules that import them.

The plugin is not loaded for the whole suite: its hooks run every coroutine test on
its own event loop, which would take over the anyio tests. Modules that need a
Jupyter server do ``from tests.jupyter_server_support import *`` and write
synchronous tests that drive ``jp_asyncio_loop``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from microlib_kernel.jupyter_server.registry import HostRegistration, register_host

EXTENSION = "microlib_kernel.jupyter_server"


@pytest.fixture(autouse=True)
def jp_loop_is_current(jp_asyncio_loop: asyncio.AbstractEventLoop) -> None:
    # jupyter_core caches its loop per thread, but an earlier test (anyio, asyncio.run)
    # may have left no current loop: Tornado's IOLoop.current() needs it to be current.
    asyncio.set_event_loop(jp_asyncio_loop)


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {EXTENSION: True}}}


def register(
    directory: Path,
    kernel_id: str,
    url: str,
    *,
    pid: int | None = None,
    api_root: str = "/microlib/api",
    token_file: str | None = None,
    token_env: str | None = None,
    auth: bool = False,
) -> HostRegistration:
    """Register a host serving at ``url`` as kernel ``kernel_id`` (this process by default)."""
    reg = HostRegistration(
        kernel_id=kernel_id,
        url=url,
        api_root=api_root,
        pid=os.getpid() if pid is None else pid,
        token_file=token_file,
        token_env=token_env,
        auth=auth,
    )
    register_host(reg, directory)
    return reg


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class EchoServer:
    """A loopback HTTP server that answers every request with what it received (JSON).

    It stands where a host would, to show exactly which headers the proxy sends.
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                reply = json.dumps(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("utf-8", "replace"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("Set-Cookie", "stolen=1; Path=/")
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()
