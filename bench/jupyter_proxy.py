"""What going through the Jupyter server's proxy costs, against talking to the host directly.

A host (DuckDB file, one ``Order``) serves on a free loopback port and is registered in
the runtime directory of a ``jupyter server`` subprocess running the microlib server
extension. Same run, same host, interleaved:

* **request**: ``GET /models/orders/{id}`` through ``/microlib/proxy/{kernel}/...``
  (authenticated by Jupyter's token) versus the host's own URL; median latency of
  sequential keep-alive requests.
* **event**: the delay from publishing an event on the host to receiving it on the
  ``/events`` stream through the proxy, versus on a direct stream open at the same time.

``python bench/jupyter_proxy.py [--quick]``
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread

COMMAND = "python bench/jupyter_proxy.py"
KERNEL = "bench-kernel"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``jupyter server`` with the extension, in temp folders; stopped by pid."""

    def __init__(self, root: Path) -> None:
        import httpx

        self.port, self.token = free_port(), secrets.token_hex(16)
        self.env = {**os.environ}
        for var in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
            self.env[var] = str(root / var.lower())
        self.runtime = Path(self.env["JUPYTER_RUNTIME_DIR"])
        self.log = (root / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                f"--IdentityProvider.token={self.token}",
                "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.jpserver_extensions={'microlib_kernel.jupyter_server': True}",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {self.token}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/status", headers=self.headers).status_code == 200:
                    return
            time.sleep(0.2)
        self.close()
        raise RuntimeError("jupyter server did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def requests(direct: str, proxied: str, headers: dict[str, str], n: int) -> tuple[list, list]:
    import httpx

    d, p = [], []
    with httpx.Client(timeout=10) as dc, httpx.Client(timeout=10, headers=headers) as pc:
        for _ in range(10):  # warm both paths up
            dc.get(direct).raise_for_status()
            pc.get(proxied).raise_for_status()
        for _ in range(n):
            for client, url, out in ((dc, direct, d), (pc, proxied, p)):
                start = time.perf_counter()
                client.get(url).raise_for_status()
                out.append(time.perf_counter() - start)
    return d, p


class Listener(threading.Thread):
    """Reads an SSE stream; records when each event id arrived."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.arrived: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = False

    def run(self) -> None:
        import httpx

        # The stream ends when the servers stop at the end of the run.
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", self.url, headers=self.headers, timeout=None) as r,
        ):
            for line in r.iter_lines():
                if line.startswith(": subscribed"):
                    self.ready.set()
                elif line.startswith("data: "):
                    self.arrived[json.loads(line[6:])["id"]] = time.perf_counter()
                if self.stop:
                    return


def events(
    host: Any, order: Any, oid: str, direct: str, proxied: str, headers: dict, n: int
) -> tuple:
    streams = [Listener(direct, {}), Listener(proxied, headers)]
    for s in streams:
        s.start()
        if not s.ready.wait(30):
            raise RuntimeError("event stream did not open")
    sent: dict[str, float] = {}

    async def emit(i: int) -> str:
        found = await order.find(oid)
        event = await found.emit("order.pinged", {"i": i})
        return str(event.id)

    for i in range(n):
        start = time.perf_counter()
        sent[host.loop.run(emit(i))] = start
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(len(s.arrived) < n for s in streams):
        time.sleep(0.05)
    for s in streams:
        s.stop = True
    d = [streams[0].arrived[k] - t for k, t in sent.items() if k in streams[0].arrived]
    p = [streams[1].arrived[k] - t for k, t in sent.items() if k in streams[1].arrived]
    return d, p


def run(quick: bool = False) -> list[Result]:
    from microlib_kernel import Host, Model
    from microlib_kernel.jupyter_server.registry import HostRegistration, register_host

    n_req, n_ev = (100, 30) if quick else (500, 100)
    flag = " --quick" if quick else ""

    class Order(Model, endpoint="orders"):
        total: float = 0.0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        host = Host(f"duckdb:///{root}/bench.duckdb", port=0)
        server = None
        try:
            host.publish(Order)
            oid = host.loop.run(Order.create(total=1.0)).id
            url = host.serve(0)
            server = Server(root)
            register_host(
                HostRegistration(KERNEL, url, "/microlib/api", os.getpid()), server.runtime
            )
            api = "/microlib/api"
            proxy = f"{server.url}/microlib/proxy/{KERNEL}{api}"
            d_req, p_req = requests(
                f"{url}{api}/models/orders/{oid}",
                f"{proxy}/models/orders/{oid}",
                server.headers,
                n_req,
            )
            d_ev, p_ev = events(
                host, Order, oid, f"{url}{api}/events", f"{proxy}/events", server.headers, n_ev
            )
        finally:
            if server is not None:
                server.close()
            host.close()
    (pr, prs), (dr, drs) = median_spread(p_req), median_spread(d_req)
    (pe, pes), (de, des) = median_spread(p_ev), median_spread(d_ev)
    ms = 1000.0
    return [
        Result(
            scenario="GET one model through the Jupyter proxy",
            metric="latency",
            value=pr * ms,
            unit="ms",
            baseline="the host's own URL",
            baseline_value=dr * ms,
            higher_is_better=False,
            spread=(prs[0] * ms, prs[1] * ms),
            baseline_spread=(drs[0] * ms, drs[1] * ms),
            command=COMMAND + flag,
            notes=f"median of {n_req} sequential keep-alive requests each, interleaved",
        ),
        Result(
            scenario="event to browser through the Jupyter proxy (SSE)",
            metric="latency",
            value=pe * ms,
            unit="ms",
            baseline="a direct /events stream, same events",
            baseline_value=de * ms,
            higher_is_better=False,
            spread=(pes[0] * ms, pes[1] * ms),
            baseline_spread=(des[0] * ms, des[1] * ms),
            command=COMMAND + flag,
            notes=f"median of {n_ev} events, {len(p_ev)}/{n_ev} arrived through the proxy",
        ),
    ]


if __name__ == "__main__":
    results = run("--quick" in sys.argv)
    print(json.dumps([r.to_json() for r in results], indent=2))
