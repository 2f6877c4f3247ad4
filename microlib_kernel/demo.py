"""``python -m microlib_kernel.demo``: publish a model, write, query and list on the DuckDB default.

It prints each step, so a first run shows what the package does without a notebook.
Data lands in ``.microlib/microlib.duckdb`` under the working directory; run it twice
and the second run finds the first run's orders.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field

from . import Host, Model


class Order(Model, endpoint="orders"):
    """An order of items."""

    customer: str
    items: list[dict[str, float | str]] = Field(min_length=1)
    total: float = 0.0
    status: Literal["PENDING", "APPROVED", "SHIPPING", "COMPLETE", "CANCELED"] = "PENDING"

    def on_update(self, changes: dict[str, object]) -> dict[str, object]:
        if "items" in changes:  # keep the total in step with the items
            items = changes["items"]
            assert isinstance(items, list)
            changes["total"] = sum(float(i.get("price", 0)) for i in items)
        return changes


async def main() -> None:
    host = Host()
    try:
        print(f"host: {host.describe()}")
        for p in host.publish(Order):
            print(f"published {p.name} {p.version} at /{p.endpoint}")
        before = await Order.count()
        print(f"orders already stored: {before}")

        ada = await Order.create(customer="ada", items=[{"sku": "tea", "price": 3.5}], total=3.5)
        bob = await Order.create(customer="bob", items=[{"sku": "cake", "price": 4.0}], total=4.0)
        print(f"created {ada.id} (ada, {ada.total}) and {bob.id} (bob, {bob.total})")

        ada = await ada.update(items=[{"sku": "tea", "price": 3.5}, {"sku": "jam", "price": 2.0}])
        ada = await ada.update(status="APPROVED")
        print(f"updated {ada.id}: status {ada.status}, total {ada.total}, revision {ada.revision}")

        approved = await Order.list(status="APPROVED", order="-created_at", limit=5)
        print(f"latest approved orders: {[o.id for o in approved]}")

        print("SQL: SELECT status, count(*), sum(total) FROM orders GROUP BY status")
        print(
            host.sql(
                "SELECT status, count(*) AS n, sum(total) AS total FROM orders "
                "GROUP BY status ORDER BY status"
            )
        )
        await host.idle()
        names = [e.name for e in host.events.recent("order.*", n=10)]
        print(f"events: {', '.join(names)}")
    finally:
        host.close()


if __name__ == "__main__":
    asyncio.run(main())
