"""What ``Secret`` fields and relations cost, each against a baseline in the same run.

* bulk creates of a model with one ``Secret[str]`` field vs the same model with a plain
  ``str`` field (encryption on write);
* ``list()`` of every instance from the store, cache cleared (decryption on read);
* ``SELECT *`` through ``host.sql`` (masking scans every value) vs the same query on
  the plain model (same row count, same host);
* ``await order.customer()`` (a relation) vs ``await Customer.find(id)``.

Ratios of medians (lower is better for times). ``python bench/secrets_cost.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, compared

from microlib_kernel import Host, Model, Secret, relation

COMMAND = "python bench/secrets_cost.py"


def run(quick: bool = False) -> list[Result]:
    from cryptography.fernet import Fernet

    n = 10_000 if quick else 100_000
    repeat = 3  # medians of 3: a reported figure, and the longest scenario but two
    lookups = 2_000 if quick else 10_000
    os.environ["MICROLIB_SECRET_KEY"] = Fernet.generate_key().decode()
    with tempfile.TemporaryDirectory() as tmp:
        host = Host(f"duckdb:///{tmp}/bench.duckdb")

        class Plain(Model, endpoint="plain"):
            owner: str
            card: str

        class Sealed(Model, endpoint="sealed"):
            owner: str
            card: Secret[str]

        class Customer(Model, endpoint="customers"):
            name: str

        class Order(Model, endpoint="orders"):
            customer_id: str
            customer = relation("Customer", "many_to_one", foreign_key="customer_id")

        for cls in (Plain, Sealed, Customer, Order):
            host.publish(cls)
        rows = [{"owner": f"o{i}", "card": f"4111-{i:012d}"} for i in range(n)]

        size = n // repeat

        def create(cls: type[Model], part: int) -> float:
            start = time.perf_counter()
            asyncio.run(cls.create_many(rows[part * size : (part + 1) * size]))
            return (time.perf_counter() - start) / size * 1e6

        def list_all(cls: type[Model]) -> float:
            host.cache.clear(cls.spec().endpoint)
            start = time.perf_counter()
            asyncio.run(cls.list())
            return time.perf_counter() - start

        def select_all(cls: type[Model]) -> float:
            start = time.perf_counter()
            host.sql(f"SELECT * FROM {cls.spec().endpoint}")
            return time.perf_counter() - start

        # Interleaved, so drift on a shared machine hits both sides alike.
        sealed_create, plain_create = [], []
        for part in range(repeat):
            sealed_create.append(create(Sealed, part))
            plain_create.append(create(Plain, part))
        sealed_list, plain_list, sealed_sql, plain_sql = [], [], [], []
        for _ in range(repeat):
            sealed_list.append(list_all(Sealed))
            plain_list.append(list_all(Plain))
            sealed_sql.append(select_all(Sealed))
            plain_sql.append(select_all(Plain))
        assert host.sql("SELECT card FROM sealed LIMIT 1").rows == [("***",)]

        async def relations() -> tuple[list[float], list[float]]:
            c = await Customer.create(name="ada")
            o = await Order.create(customer_id=c.id)
            rel, find = [], []
            for _ in range(repeat):
                start = time.perf_counter()
                for _ in range(lookups):
                    await o.customer()
                rel.append((time.perf_counter() - start) / lookups * 1e6)
                start = time.perf_counter()
                for _ in range(lookups):
                    await Customer.find(c.id)
                find.append((time.perf_counter() - start) / lookups * 1e6)
            return rel, find

        rel_times, find_times = asyncio.run(relations())
        host.close()

    def result(name, metric, unit, values, base, baseline, scale=1.0) -> Result:
        return compared(name, metric, unit, values, base, baseline, COMMAND, scale)

    return [
        result(
            f"Secret: bulk create ({size:,} per batch)",
            "time per instance",
            "µs",
            sealed_create,
            plain_create,
            "same model with a plain str field",
        ),
        result(
            f"Secret: list() of {n:,} from the store",
            "time",
            "ms",
            sealed_list,
            plain_list,
            "same model with a plain str field",
            1000,
        ),
        result(
            f"Secret: SELECT * of {n:,} rows (masked)",
            "time",
            "ms",
            sealed_sql,
            plain_sql,
            "same query on the plain model",
            1000,
        ),
        result(
            "Relation: await order.customer() (cached)",
            "time per call",
            "µs",
            rel_times,
            find_times,
            "await Customer.find(id)",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
