"""`microlib serve` subprocesses for end-to-end tests: start, read the URL, stop, crash.

Every process is a real subprocess on loopback (port 0), ended by PID; every wait is
bounded; its output is drained on a thread so the pipe never fills.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
ORDERS = ROOT / "notebooks" / "orders_service.ipynb"
MICROLIB = [sys.executable, "-m", "microlib_kernel.cli"]
API = "/microlib/api"


class Served:
    """A `microlib serve` process and what it printed."""

    def __init__(self, proc: subprocess.Popen[str], url: str, lines: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.lines = lines

    @property
    def api(self) -> str:
        return self.url + API


def start_serve(
    cwd: Path,
    *args: str,
    timeout: float = 90,
    env: Mapping[str, str] | None = None,
    scheme: str = "http",
) -> Served:
    """Start ``microlib serve --port 0 ... ARGS`` in ``cwd`` and wait for "ready".

    Args:
        env: variables added to (or, with value ``""``, removed from) this environment.
    """
    full = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if value:
            full[key] = value
        else:
            full.pop(key, None)
    proc = subprocess.Popen(
        [*MICROLIB, "serve", "--port", "0", "--no-progress", "--drain", "0.5", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full,
    )  # fmt: skip
    lines: list[str] = []
    url = ""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(rf"serving ({scheme}://127\.0\.0\.1:\d+)", line)
        if found:
            url = found.group(1)
        if "microlib: ready" in line or "not serving" in line:
            break
    if not url or not any("microlib: ready" in ln for ln in lines):
        stop(proc)
        raise AssertionError("microlib serve did not get ready:\n" + "".join(lines))
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    return Served(proc, url, lines)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` (if it still runs) and wait for the exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        return proc.wait(30)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def creates_until_killed(served: Served, seconds: float = 1.5) -> list[str]:
    """Create orders from 8 threads, SIGKILL the server after ``seconds``; the ids of
    every create it acknowledged (201) before dying."""
    acknowledged: list[str] = []
    stop_load = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop_load.is_set():
                try:
                    r = client.post(
                        f"{served.api}/models/orders",
                        json={"customer_id": "k", "items": [{"price": 2}]},
                    )
                except httpx.HTTPError:
                    return  # the server died
                if r.status_code == 201:
                    acknowledged.append(r.json()["id"])

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop(served.proc, signal.SIGKILL)
    stop_load.set()
    for t in threads:
        t.join(15)
    return acknowledged
