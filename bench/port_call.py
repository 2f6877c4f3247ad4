"""Port overhead: a port call vs the plain update it amounts to.

A port call resolves its adapter, binds services, runs the adapter under a timeout and
saves its changes with ``port_flow`` in one write. The baseline is ``instance.update``
of the same change on the same host (DuckDB file, group commit), same run; both run
N operations on distinct instances, gathered 100 at a time. Ratio of throughputs
(higher is better). ``python bench/port_call.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, median_spread

from microlib_kernel import Host, Model, port

COMMAND = "python bench/port_call.py"


class Ledger:
    async def record(self, amount: float) -> str:
        return "ok"


async def charge(account: Any, *, ledger: Ledger) -> dict[str, Any]:
    return {"note": await ledger.record(account.balance)}


def run(quick: bool = False) -> list[Result]:
    n = 1_000 if quick else 5_000
    rounds = 3 if quick else 5
    batch = 100
    with tempfile.TemporaryDirectory() as tmp:
        host = Host(f"duckdb:///{tmp}/ports.duckdb")

        class Account(Model, endpoint="accounts"):
            balance: float = 1.0
            note: str | None = None
            charge = port("bank.charge", timeout=5.0, retries=1)

        host.services.register("ledger", Ledger())
        host.adapters.register("bank.charge", charge)
        host.publish(Account)

        async def measure(op: str) -> float:
            accounts = await Account.create_many([{} for _ in range(n)])
            start = time.perf_counter()
            for i in range(0, n, batch):
                chunk = accounts[i : i + batch]
                if op == "port":
                    await asyncio.gather(*(a.charge() for a in chunk))
                else:
                    await asyncio.gather(*(a.update(note="ok") for a in chunk))
            return n / (time.perf_counter() - start)

        ports, updates = [], []
        for _ in range(rounds):
            updates.append(asyncio.run(measure("update")))
            ports.append(asyncio.run(measure("port")))
        host.close()
    value, spread = median_spread(ports)
    base, base_spread = median_spread(updates)
    return [
        Result(
            scenario=f"Ports: {n:,} port calls (async adapter + injected service)",
            metric="calls/s",
            value=value,
            unit="calls/s",
            baseline="instance.update of the same change",
            baseline_value=base,
            target="≥ 0.5× its throughput",
            target_ratio=0.5,
            spread=spread,
            baseline_spread=base_spread,
            command=COMMAND,
        )
    ]


if __name__ == "__main__":
    print(json.dumps([r.to_json() for r in run("--quick" in sys.argv)], indent=2))
