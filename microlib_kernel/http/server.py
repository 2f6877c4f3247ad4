"""The background HTTP server: uvicorn running as a task on the host's own loop.

The host loop lives in a daemon thread, so the server never blocks a notebook cell and
a cell never blocks it (beyond the GIL). We bind the listening socket ourselves: a busy
port then raises a clear :class:`MicrolibError` here, instead of uvicorn calling
``sys.exit`` inside the loop. uvicorn installs signal handlers only on the main thread,
which the host loop never is.

TLS: with ``certfile`` and ``keyfile`` set, uvicorn wraps the socket with them
(``ssl_certfile``/``ssl_keyfile``) and the URL is ``https://``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import TYPE_CHECKING, Any

from ..errors import MicrolibError

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from ..host.api import HostApi

log = logging.getLogger("microlib_kernel.http")

#: How long a stopping server waits for requests in flight before cancelling them.
GRACEFUL_SECONDS = 5.0
STARTUP_SECONDS = 10.0


class PortInUse(MicrolibError):
    """The port asked for is taken by another server (``details["port"]`` says which)."""


class ApiServer:
    """A running server: the uvicorn server, its task on the host loop, and the app.

    Attributes:
        uvicorn: the ``uvicorn.Server``.
        task: the task running it on the host loop.
        app: the Starlette app (``create_app(host.api)``).
        bind: the address it listens on.
        port: the real port (also for port 0).
        url: ``http://ADDRESS:PORT``.
    """

    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None],
        app: Starlette,
        bind: str,
        tls: bool = False,
    ) -> None:
        self.uvicorn = server
        self.task = task
        self.app = app
        self.bind = bind
        sockname = server.servers[0].sockets[0].getsockname()
        self.port: int = sockname[1]
        self.url = base_url(bind, self.port, "https" if tls else "http")

    def __repr__(self) -> str:
        return f"<ApiServer {self.url}>"


def base_url(bind: str, port: int, scheme: str = "http") -> str:
    """The URL clients use: a wildcard bind is reached through loopback."""
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)
    if ":" in address:
        address = f"[{address}]"
    return f"{scheme}://{address}:{port}"


def tls_options(certfile: str | None, keyfile: str | None, cwd: Any = None) -> dict[str, Any]:
    """uvicorn's TLS options for a certificate and its key (``{}`` without TLS).

    Raises:
        MicrolibError: only one of the two is set, a file is missing, or they do not load.
    """
    import ssl
    from pathlib import Path

    if not certfile and not keyfile:
        return {}
    if not (certfile and keyfile):
        raise MicrolibError("TLS needs both certfile and keyfile (--certfile and --keyfile)")
    paths = [
        Path(cwd or ".", f) if not Path(f).is_absolute() else Path(f) for f in (certfile, keyfile)
    ]
    for path in paths:
        if not path.is_file():
            raise MicrolibError(f"TLS file {path} does not exist")
    try:  # load them now, so a bad pair fails with a clear message before serving
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(*map(str, paths))
    except ssl.SSLError as exc:
        raise MicrolibError(f"TLS certificate and key do not load: {exc}") from None
    return {"ssl_certfile": str(paths[0]), "ssl_keyfile": str(paths[1])}


def _listen(bind: str, port: int) -> socket.socket:
    """A listening socket on ``bind:port``.

    Raises:
        PortInUse: the port is busy.
        MicrolibError: the address cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(
            bind or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise MicrolibError(f"cannot bind the API to {bind!r}: {exc}", bind=bind) from None
    family, kind, proto, _, address = infos[0]
    # proto is IPPROTO_TCP here (not 0, as socket.socket() gives): asyncio then sets
    # TCP_NODELAY on every accepted connection. Without it, a keep-alive client waits
    # ~40 ms per response (Nagle's algorithm meets delayed ACKs).
    sock = socket.socket(family, kind, proto)
    try:
        # Reuse a port left in TIME_WAIT by a server just stopped; a port another
        # socket listens on still fails with EADDRINUSE.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {bind} is busy: another server listens there; choose "
                "another port, or port 0 for a free one",
                port=port,
                bind=bind,
            ) from None
        raise MicrolibError(
            f"cannot listen on {bind}:{port}: {exc.strerror or exc}", port=port, bind=bind
        ) from None
    return sock


async def start_server(api: HostApi, port: int, bind: str) -> tuple[ApiServer, str]:
    """Start serving a host's API on the running (host) loop.

    Args:
        api: what the routes use of the host (``Host.api``).
        port: TCP port; 0 picks a free one.
        bind: address to bind (``127.0.0.1`` unless told otherwise).

    Returns:
        ``(server, url)``; ``url`` is ``http(s)://ADDRESS:PORT`` without the API root.

    Raises:
        PortInUse: the port is busy (a ``MicrolibError``; the message names the port).
        MicrolibError: the address cannot be bound, or the server did not start.
    """
    import uvicorn

    from .app import create_app

    s = api.ctx.settings
    tls = tls_options(s.certfile, s.keyfile, s.cwd or None)
    sock = _listen(bind, port)
    try:
        app = create_app(api)
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,  # never reconfigure the user's (or the kernel's) logging
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=int(GRACEFUL_SECONDS),
        **tls,
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(
        server.serve(sockets=[sock]), name=f"microlib-http-{port}"
    )
    try:
        async with asyncio.timeout(STARTUP_SECONDS):
            while not server.started and not task.done():
                await asyncio.sleep(0.005)
    except TimeoutError:
        server.should_exit = True
        sock.close()
        raise MicrolibError(f"the HTTP server did not start within {STARTUP_SECONDS} s") from None
    if task.done():
        sock.close()
        exc = task.exception() if not task.cancelled() else None
        raise MicrolibError(f"the HTTP server stopped while starting: {exc!r}") from None
    api_server = ApiServer(server, task, app, bind, tls=bool(tls))
    log.info("serving the API at %s%s", api_server.url, s.api_root)
    return api_server, api_server.url


async def stop_server(server: Any) -> None:
    """Stop a server started by :func:`start_server` and free its port.

    Requests in flight get up to ``GRACEFUL_SECONDS`` to finish; event streams end.
    """
    if not isinstance(server, ApiServer):
        return
    server.app.state.stopping.set()
    server.uvicorn.should_exit = True
    try:
        done, _ = await asyncio.wait({server.task}, timeout=GRACEFUL_SECONDS + 5)
        if not done:
            server.uvicorn.force_exit = True
            server.task.cancel()
            await asyncio.wait({server.task}, timeout=5)
        elif not server.task.cancelled() and server.task.exception() is not None:
            log.error("the HTTP server failed", exc_info=server.task.exception())
    finally:
        for listener in getattr(server.uvicorn, "servers", []):
            listener.close()
