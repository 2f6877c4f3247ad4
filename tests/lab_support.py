"""A real JupyterLab server for browser tests, and Chromium driven by Playwright.

``JupyterLab`` starts ``jupyter lab`` as a subprocess on a free loopback port with a
random token, in folders of the test (config, data, runtime, IPython, HOME), and
stops it by PID with bounded waits. ``chromium()`` finds Debian's Chromium, or says
loudly why the browser tests cannot run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str:
    """The Chromium executable; skips the test loudly when there is none."""
    found = os.environ.get("MICROLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(found).exists():
        pytest.skip(
            "NO CHROMIUM: the browser tests need Debian's chromium (/usr/bin/chromium); "
            ".ci/run installs it with apt-get install -y chromium"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JupyterLab:
    """``jupyter lab`` on 127.0.0.1, serving ``root``, stopped by :meth:`stop`.

    Args:
        base: a folder of the test for the server's own folders and its log.
        root: the folder the server serves (notebooks; kernels start there).
        env: extra environment for the server and its kernels.
    """

    def __init__(self, base: Path, root: Path, env: dict[str, str] | None = None) -> None:
        self.base = base
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        for var, sub in {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "IPYTHONDIR": "ipython",
            "HOME": "home",
        }.items():
            (base / sub).mkdir(parents=True, exist_ok=True)
            self.env[var] = str(base / sub)
        self.env.update(env or {})
        self.runtime = base / "runtime"
        quiet_lab_settings(base / "config")
        self.log_path = base / "jupyterlab.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={root}",
                "--LabApp.expose_app_in_browser=True",
            ],
            env=self.env,
            cwd=root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, to stop it whole
        )
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
            trust_env=False,
        )
        try:
            self._wait_ready(90)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/api/status", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"jupyter lab did not answer in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    def lab_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def wait_for(self, what: str, check: Any, timeout: float = 60) -> Any:
        """Poll ``check()`` until it returns something truthy (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.2)
        raise TimeoutError(f"{what} did not happen in {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        """Shut the server down (its kernels with it); kill it if it does not stop."""
        kernels = set(kernel_pids(self.runtime)) | set(children(self.proc.pid))
        with contextlib.suppress(httpx.HTTPError):
            self.http.post("/api/shutdown", timeout=10)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Kernels run in sessions of their own; the server shut them down, and a kernel
        # whose server is gone exits by itself. Make sure, by the pids they registered.
        for pid in kernels:
            stop_pid(pid)
        self.http.close()
        self._log.close()


def kernel_pids(runtime: Path) -> list[int]:
    pids = []
    for path in runtime.glob("microlib-host-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            pids.append(int(json.loads(path.read_text())["pid"]))
    return pids


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def stop_pid(pid: int, timeout: float = 10) -> None:
    """Wait for process ``pid`` to end; SIGKILL it after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def quiet_lab_settings(config_dir: Path) -> None:
    """No news pop-up (it would cover the screenshot, and it fetches from the Internet)."""
    path = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    path.mkdir(parents=True, exist_ok=True)
    (path / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


@contextlib.contextmanager
def jupyter_lab(base: Path, root: Path, env: dict[str, str] | None = None) -> Iterator[JupyterLab]:
    lab = JupyterLab(base, root, env)
    try:
        yield lab
    finally:
        lab.stop()
