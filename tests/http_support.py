"""Shared pieces of the HTTP tests: a host serving on 127.0.0.1 (port 0) and its models.

``tests/integration/conftest.py`` turns :func:`serve_host` into the ``served``/``api``
fixtures; :func:`create_order` creates an order through the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from microlib_kernel import Host, Model, command
from microlib_kernel.config import Settings
from tests.models import make_models


def make_counter() -> type[Model]:
    """A model whose every update bumps ``n`` from the state it was applied to."""

    class Counter(Model, endpoint="counters"):
        n: int = 0
        note: str = ""

        def on_update(self, changes: dict) -> dict:
            return {**changes, "n": self.n + 1}

        @command
        def peek(self) -> None:
            return None

    return Counter


def make_broken() -> type[Model]:
    """A model whose hooks fail with bugs (not ValueError)."""

    class Gadget(Model, endpoint="gadgets"):
        name: str = "g"

        def on_update(self, changes: dict) -> dict:
            raise RuntimeError("secret internals: password=hunter2")

    return Gadget


@dataclass
class Served:
    host: Host
    url: str
    api: str
    models: dict[str, type[Model]]


def serve_host(tmp_path: Path, *, broken: bool = True, **settings: object) -> Served:
    """A host on a DuckDB file with Order, Customer, Counter and Gadget, serving on port 0.

    Args:
        tmp_path: where the database goes.
        broken: publish Gadget, whose hook fails with a bug (500s on purpose).
        settings: host settings (``body_limit``, ``auth_tokens``...).
    """
    base = Settings.load(
        cwd=tmp_path, env={}, datasource=f"duckdb:///{tmp_path}/api.duckdb", **settings
    )
    host = Host(settings=base)
    order, customer = make_models()
    counter, gadget = make_counter(), make_broken()
    try:
        for cls in (customer, order, counter, gadget) if broken else (customer, order, counter):
            host.publish(cls)
        url = host.serve(port=0)
    except BaseException:
        host.close()
        raise
    models = {"Order": order, "Customer": customer, "Counter": counter, "Gadget": gadget}
    return Served(host, url, f"{url}{host.settings.api_root}", models)


ITEMS = [{"sku": "a", "price": 3.5}]


def create_order(api: httpx.Client, **data: Any) -> dict[str, Any]:
    """``POST /models/orders`` with one item (plus ``data``); asserts the 201."""
    r = api.post("/models/orders", json={"items": ITEMS, **data})
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


def fuzz_settings(max_examples: int) -> Any:
    """Hypothesis settings of the API fuzz tests: repeatable, no deadline, no database."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
