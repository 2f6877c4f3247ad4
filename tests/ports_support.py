"""Controllable fake services and the order workflow used by the port tests.

A :class:`FakeService` stands for an external system (a payment provider, a warehouse).
Each operation can be told how to answer the next calls: ``ok``, ``fail``, ``hang``
(never returns) or ``fail-once``; every call is written to a shared journal, so tests
can assert the exact order of calls across services.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from microlib_kernel import Host, Model, port
from microlib_kernel.errors import DatasourceUnavailable
from microlib_kernel.store.leases import LeaseStore

Mode = str  # "ok" | "fail" | "hang" | "fail-once"


class FakeService:
    """An external service whose operations answer as told."""

    def __init__(self, name: str, journal: list[str]) -> None:
        self.name = name
        self.journal = journal
        self._modes: dict[str, list[Mode]] = {}

    def set(self, op: str, *modes: Mode) -> None:
        """The next calls of ``op`` answer with ``modes`` in turn; the last one sticks."""
        expanded: list[Mode] = []
        for mode in modes:
            expanded.extend(["fail", "ok"] if mode == "fail-once" else [mode])
        self._modes[op] = expanded

    def calls(self, op: str) -> int:
        return self.journal.count(f"{self.name}.{op}")

    async def call(self, op: str) -> str:
        modes = self._modes.get(op) or ["ok"]
        mode = modes.pop(0) if len(modes) > 1 else modes[0]
        self.journal.append(f"{self.name}.{op}")
        if mode == "fail":
            raise RuntimeError(f"{self.name}.{op} is down")
        if mode == "hang":
            await asyncio.sleep(3600)
        return f"{op}-{len(self.journal)}"


class Services:
    """The three fake services of the order workflow, sharing one journal."""

    def __init__(self) -> None:
        self.journal: list[str] = []
        self.payments = FakeService("payments", self.journal)
        self.inventory = FakeService("inventory", self.journal)
        self.shipping = FakeService("shipping", self.journal)

    def register(self, host: Host) -> None:
        host.services.register("payments", self.payments)
        host.services.register("inventory", self.inventory)
        host.services.register("shipping", self.shipping)


async def authorize(order: Any, *, payments: FakeService) -> dict[str, Any]:
    return {"payment_id": await payments.call("authorize")}


async def cancel(order: Any, *, payments: FakeService) -> dict[str, Any]:
    await payments.call("cancel")
    return {"payment_id": None}


async def pick(order: Any, *, inventory: FakeService) -> dict[str, Any]:
    return {"pick_id": await inventory.call("pick")}


async def restock(order: Any, *, inventory: FakeService) -> None:
    await inventory.call("restock")


async def ship(order: Any, *, shipping: FakeService) -> dict[str, Any]:
    return {"ship_id": await shipping.call("ship")}


async def recall(order: Any, *, shipping: FakeService) -> None:
    await shipping.call("recall")


def complete(order: Any) -> dict[str, Any]:
    return {"status": "COMPLETE"}


ADAPTERS = {
    "payments.authorize": authorize,
    "payments.cancel": cancel,
    "inventory.pick": pick,
    "inventory.restock": restock,
    "shipping.ship": ship,
    "shipping.recall": recall,
    "orders.complete": complete,
}


def register_adapters(host: Host) -> None:
    for name, fn in ADAPTERS.items():
        host.adapters.register(name, fn)


def order_model(**options: dict[str, Any]) -> type[Model]:
    """A fresh Order class: approved -> authorize -> pick -> ship -> complete.

    ``options["pick"] = {"timeout": 0.1}`` adds port options to one port.
    """

    def opts(name: str) -> dict[str, Any]:
        return options.get(name, {})

    class Order(Model, endpoint="orders"):
        total: float = 10.0
        status: str = "PENDING"
        payment_id: str | None = None
        pick_id: str | None = None
        ship_id: str | None = None

        authorize = port(
            "payments.authorize",
            consumes="order.approved",
            produces="payment.authorized",
            undo="payments.cancel",
            **({"backoff": 0.01} | opts("authorize")),
        )
        pick = port(
            "inventory.pick",
            consumes="payment.authorized",
            produces="order.picked",
            undo="inventory.restock",
            **({"backoff": 0.01} | opts("pick")),
        )
        ship = port(
            "shipping.ship",
            consumes="order.picked",
            produces="order.shipped",
            undo="shipping.recall",
            **({"backoff": 0.01} | opts("ship")),
        )
        complete = port(
            "orders.complete",
            consumes="order.shipped",
            produces="order.completed",
            **opts("complete"),
        )

    return Order


def event_names(host: Host, pattern: str = "*") -> list[str]:
    return [e.name for e in host.events.recent(pattern, n=0)]


class FlakyClaims(LeaseStore):
    """A lease store whose next ``failures`` claims fail, as while its database is down."""

    def __init__(self, store: LeaseStore, failures: int = 0) -> None:
        self.store = store
        self.failures = failures
        self.claims = 0

    async def claim(self, key: str, owner: str, ttl: float) -> bool:
        self.claims += 1
        if self.failures > 0:
            self.failures -= 1
            raise DatasourceUnavailable("the database is not reachable right now")
        return await self.store.claim(key, owner, ttl)

    async def renew(self, keys: Sequence[str], owner: str, ttl: float) -> set[str]:
        return await self.store.renew(keys, owner, ttl)

    async def release(self, key: str, owner: str) -> None:
        await self.store.release(key, owner)

    async def expired(self, limit: int = 100) -> list[str]:
        return await self.store.expired(limit)
