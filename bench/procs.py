"""Processes for benchmarks: `microlib serve` subprocesses, their URLs and their memory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

MICROLIB = [sys.executable, "-m", "microlib_kernel.cli"]


class Serve:
    """A running ``microlib serve`` (stopped by PID with :meth:`stop`)."""

    def __init__(self, proc: subprocess.Popen[str], url: str, lines: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.api = url + "/microlib/api"
        self.lines = lines

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss(self) -> int:
        """Resident set size in bytes."""
        return rss_of(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def serve(
    cwd: Path, *notebooks: str, params: dict[str, str] | None = None, timeout: float = 180
) -> Serve:
    """Start ``microlib serve NOTEBOOK...`` on a free port in ``cwd``; wait until ready."""
    args = [*MICROLIB, "serve", "--port", "0", "--no-progress", "--drain", "0", *notebooks]
    for name, value in (params or {}).items():
        args += ["-p", name, value]
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = ""
    deadline = time.monotonic() + timeout
    ready = False
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if m := re.search(r"serving (http://127\.0\.0\.1:\d+)", line):
            url = m.group(1)
        if "microlib: ready" in line:
            ready = True
            break
        if "not serving" in line:
            break
    if not (ready and url):
        Serve(proc, url, lines).stop()
        raise RuntimeError("microlib serve did not get ready:\n" + "".join(lines[-20:]))
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    return Serve(proc, url, lines)


def deploy(
    cwd: Path,
    notebook: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """``microlib deploy NOTEBOOK --to URL`` (token from ``cwd/.microlib/deploy-token``)."""
    args = [*MICROLIB, "deploy", notebook, "--to", url, "--no-progress"]
    for name, value in (params or {}).items():
        args += ["-p", name, value]
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def rss_of(pid: int) -> int:
    """Resident set size of a process, in bytes (Linux)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
