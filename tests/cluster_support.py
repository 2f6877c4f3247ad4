"""Several `microlib serve` processes on one PostgreSQL + NATS, behind a real HAProxy.

HAProxy comes from Debian: when it is missing and the tests run as root with apt-get,
it is installed here (about 15 s), as the issue asks of the test set-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.pg_support import REQUIRE
from tests.serve_support import API, ROOT, start_serve
from tests.services import reachable

__all__ = ["API", "ROOT", "TOKEN", "HAProxy", "Node", "start_node", "wait_healthy"]
TOKEN = "cluster-test-deploy-token"


def ensure_haproxy() -> str:
    """The haproxy binary, installed from Debian's packages if needed."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "haproxy"]):
            subprocess.run(step, check=False, capture_output=True, timeout=600, env=env)
        if Path("/usr/sbin/haproxy").exists():
            return "/usr/sbin/haproxy"
    message = "HAProxy is not installed and cannot be installed here (apt-get install haproxy)"
    if REQUIRE:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    """One `microlib serve` process."""

    name: str
    proc: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.url + API

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def output(self) -> str:
        return "".join(self.lines[-60:])


def start_node(
    name: str, workdir: Path, env: dict[str, str], *notebooks: str, timeout: float = 120
) -> Node:
    """Start `microlib serve` on port 0 as node ``name`` and wait for "ready"."""
    workdir.mkdir(parents=True, exist_ok=True)
    served = start_serve(workdir, *notebooks, timeout=timeout, env={"MICROLIB_NODE": name, **env})
    return Node(name, served.proc, served.url, served.lines)


class HAProxy:
    """A real HAProxy in front of the nodes: round robin, health checks on /health."""

    def __init__(self, workdir: Path, nodes: list[Node]) -> None:
        self.binary = ensure_haproxy()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(
            f"    server {n.name} {n.url.removeprefix('http://')} check inter 200 fall 2 rise 2"
            for n in nodes
        )
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            f"""global
    maxconn 1024
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
frontend api
    bind 127.0.0.1:{self.port}
    default_backend hosts
backend hosts
    balance roundrobin
    option httpchk GET {API}/health
{servers}
"""
        )
        self.proc = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not reachable("127.0.0.1", self.port, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                self.stop()
                raise AssertionError(f"haproxy did not start: {err}")
            time.sleep(0.05)

    @property
    def api(self) -> str:
        return self.url + API

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def wait_healthy(client: httpx.Client, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get(f"{url}{API}/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")
