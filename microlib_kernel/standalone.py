"""``microlib serve``: a standalone host that deploys notebooks into itself and stays up.

Start: open the datasource, serve the HTTP API (``/health`` says ``starting``), deploy
each notebook in order (papermill, its own kernel, published over HTTP into this
host), then ``/health`` says ``ok``. Stop on SIGINT/SIGTERM: ``/health`` says
``draining`` and responses ask clients to close their connections; after the drain
delay the server stops accepting, finishes the requests in flight, every datasource is
flushed and closed, and the process exits 0.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import Settings
from .deployer import DeployResult, deploy_notebook
from .host.tokens import load_or_create_token
from .http.server import base_url

DEFAULT_DRAIN_SECONDS = 1.0


def run_standalone(
    notebooks: Sequence[str],
    *,
    settings: Settings,
    parameters: Mapping[str, Any] | None = None,
    drain_seconds: float = DEFAULT_DRAIN_SECONDS,
    progress: bool = True,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    cafile: str | None = None,
) -> int:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM); returns the exit code.

    Args:
        notebooks: notebooks to deploy at start, in order.
        settings: the host's settings (datasource, port, bind, ...).
        parameters: papermill parameters for every notebook.
        drain_seconds: how long a stopping host keeps answering (with ``Connection:
            close`` and a 503 ``/health``) before it stops accepting connections.
        progress: show papermill progress bars.
        stop: set it to stop (tests); by default SIGINT/SIGTERM set it.
        say: where status lines go.
        cafile: CA that signed ``settings.certfile``, for the deploying kernels to trust
            the host (default: ``MICROLIB_CAFILE``, else the system's CAs).
    """
    stop = stop or _signal_event()
    if "MICROLIB_TUNE_GC" not in os.environ:
        # This process is the host's alone: large caches should not cost full GC walks.
        settings = settings.replace(tune_gc=True)
    deploy = functools.partial(
        deploy_notebook,
        parameters=parameters,
        home=settings.home_path,
        progress=progress,
        api_root=settings.api_root,
        cafile=cafile,
    )
    # With a known port, the first notebook's kernel starts while the host opens its
    # datasource and its server (the kernel waits for the host): a third of a cold
    # start. With port 0 the URL is only known once the host serves.
    early: _Early | None = None
    if notebooks and settings.port:
        token = load_or_create_token(settings.home_path, settings.deploy_token)
        scheme = "https" if settings.certfile else "http"
        target = base_url(settings.bind, settings.port, scheme)
        early = _Early(lambda cancel: deploy(notebooks[0], target=target, token=token,
                                             wait_for_target=30.0, cancel=cancel))  # fmt: skip
    host = None
    try:
        from .host import Host

        host = Host(settings=settings)
        host.starting = True
        if host.restore_report.records:
            say(f"microlib: {host.restore_report.summary()}")
            for note in host.restore_report.notes:
                say(f"microlib: restore: {note}")
        url = host.serve()
        say(
            f"microlib: serving {host.api_url} ({host.datasource.describe()}); "
            f"deploy token in {settings.home_path / 'deploy-token'}"
        )
        for index, notebook in enumerate(notebooks):
            if index == 0 and early is not None:
                result = early.result()
            else:
                result = deploy(notebook, target=url, token=host.deploy_token)
            say(f"microlib: {result.summary()}")
            if not result.ok:
                say(
                    f"microlib: not serving: {Path(notebook).name} failed; "
                    f"the record is {result.output}"
                )
                return 1
        host.starting = False
        for entry in host.registry.entries():
            say(f"microlib: {entry.name} {entry.active} at {host.api_url}/models/{entry.endpoint}")
        say(
            f"microlib: ready ({len(host.registry.entries())} model(s)); API docs at "
            f"{host.api_url}/docs; stop with Ctrl-C or SIGTERM"
        )
        while not stop.wait(0.5):
            pass
        say("microlib: draining")
        host.draining = True
        time.sleep(max(0.0, drain_seconds))
        return 0
    finally:
        if early is not None:
            early.cancel()  # a host that failed to start leaves no kernel behind
        if host is not None:
            host.close()
            say("microlib: stopped")


class _Early:
    """A deployment started in a thread before the host serves."""

    def __init__(self, run: Callable[[threading.Event], DeployResult]) -> None:
        self._cancel = threading.Event()
        self._result: DeployResult | None = None
        self._thread = threading.Thread(target=self._main, args=(run,), daemon=True)
        self._thread.start()

    def _main(self, run: Callable[[threading.Event], DeployResult]) -> None:
        self._result = run(self._cancel)

    def result(self) -> DeployResult:
        self._thread.join()
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        if self._thread.is_alive():
            self._cancel.set()
            self._thread.join(30)


def _signal_event() -> threading.Event:
    """An event set by SIGINT or SIGTERM (handlers only work on the main thread)."""
    event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: event.set())
    return event
