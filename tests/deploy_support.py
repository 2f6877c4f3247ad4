"""Shared pieces of the hot-deployment tests: a served host, model sources, a load generator."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from microlib_kernel import Host
from microlib_kernel.config import Settings

#: The Order of the deploy tests, as source text. ``{extra}`` adds fields; the port
#: ``note`` runs once per created order (it consumes ``order.created``).
ORDER_SOURCE = """\
from microlib_kernel import Model, port

class Order(Model, endpoint="orders"):
    total: float = 0.0
    note_id: str | None = None
{extra}
    note = port("audit.note", consumes="order.created")
"""


def order_source(extra: str = "") -> str:
    """The Order source with ``extra`` field lines (indented by four spaces)."""
    lines = "".join(f"    {line}\n" for line in extra.splitlines() if line.strip())
    return ORDER_SOURCE.format(extra=lines)


@dataclass
class DeployHost:
    """A host on a DuckDB file serving on port 0, with the deploy token at hand."""

    host: Host
    url: str
    api: str
    token: str
    notes: Counter[str] = field(default_factory=Counter)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def deploy(self, source: str, **body: Any) -> httpx.Response:
        """``POST /deploy`` with the token."""
        return httpx.post(
            f"{self.api}/deploy", json={"source": source, **body}, headers=self.auth, timeout=30
        )


def open_deploy_host(tmp_path: Path, **settings: Any) -> DeployHost:
    """A served host whose ``audit.note`` adapter counts its calls per order id."""
    base = Settings.load(
        cwd=tmp_path, env={}, datasource=f"duckdb:///{tmp_path}/deploy.duckdb", **settings
    )
    host = Host(settings=base)
    notes: Counter[str] = Counter()

    async def note(order: Any) -> dict[str, Any]:
        notes[order.id] += 1
        return {"note_id": f"n-{order.id}"}

    try:
        host.adapters.register("audit.note", note)
        url = host.serve(port=0)
    except BaseException:
        host.close()
        raise
    return DeployHost(host, url, f"{url}{host.settings.api_root}", host.deploy_token, notes)


@dataclass
class Load:
    """What the load threads saw."""

    created: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, response: httpx.Response, want: int) -> bool:
        with self.lock:
            self.requests += 1
            version = response.headers.get("x-microlib-version")
            if version:
                self.versions[version] += 1
            if response.status_code != want:
                self.failures.append(
                    f"{response.request.method} {response.request.url.path}: "
                    f"{response.status_code} {response.text[:300]}"
                )
                return False
            return True

    def failed(self, what: str) -> None:
        with self.lock:
            self.requests += 1
            self.failures.append(what)


def _worker(api: str, load: Load, stop: threading.Event, deadline: float) -> None:
    with httpx.Client(base_url=api, timeout=10) as client:
        mine: list[str] = []
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            i += 1
            try:
                r = client.post("/models/orders", json={"total": i})
                if load.ok(r, 201):
                    mine.append(r.json()["id"])
                    with load.lock:
                        load.created.append(r.json()["id"])
                if mine:
                    load.ok(client.get(f"/models/orders/{mine[i % len(mine)]}"), 200)
                if i % 5 == 0:
                    load.ok(client.get("/models/orders", params={"__limit": 5}), 200)
            except httpx.HTTPError as exc:
                load.failed(f"{type(exc).__name__}: {exc}")


@contextmanager
def under_load(api: str, threads: int = 4, seconds: float = 60.0) -> Iterator[Load]:
    """Threads issuing POST and GET against ``api`` until the block ends (bounded)."""
    load = Load()
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(target=_worker, args=(api, load, stop, deadline), daemon=True)
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    try:
        yield load
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
        assert not any(w.is_alive() for w in workers), "a load thread did not stop"


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until true (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise TimeoutError("condition not met in time")
