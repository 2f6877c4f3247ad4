"""End to end: `microlib serve` killed with SIGKILL comes back serving the same versions,
weights and rollbacks that were acknowledged before the kill (issue 16, restart safety).

Every process is a real subprocess on loopback, ended by PID; every wait is bounded.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve_deploy import microlib
from tests.serve_support import ORDERS, Served, start_serve, stop

pytestmark = pytest.mark.slow

TICKET = """\
from microlib_kernel import Model, command

class Ticket(Model, endpoint="tickets"):
    title: str = ""

    @command
    def which(self):
        return {{"code": "{code}"}}
"""


def state(served: Served, token: str) -> dict[str, Any]:
    models = httpx.get(f"{served.api}/config", timeout=10).json()["models"]
    history = httpx.get(
        f"{served.api}/deploy", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["deployments"]
    return {
        "models": {
            m["name"]: {k: m[k] for k in ("active", "versions", "routes", "published")}
            for m in models
        },
        "history": [(d["kind"], d["names"], d["versions"]) for d in history],
    }


def answers(served: Served, endpoint: str, ids: list[str]) -> list[tuple[str, Any]]:
    out = []
    with httpx.Client(timeout=10) as client:
        for id in ids:
            r = client.get(f"{served.api}/models/{endpoint}/{id}")
            assert r.status_code == 200, r.text
            out.append((r.headers["X-Microlib-Version"], r.json()))
    return out


def test_sigkill_then_restart_serves_the_same_versions_and_routes(tmp_path: Path) -> None:
    shutil.copy(ORDERS, tmp_path / "orders_service.ipynb")
    served = start_serve(tmp_path, "orders_service.ipynb")
    try:
        token = (tmp_path / ".microlib" / "deploy-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        # microlib deploy: a second Order version from the notebook (papermill, a kernel).
        out = microlib(
            tmp_path, "deploy", "orders_service.ipynb", "--to", served.url, "--no-progress"
        )
        assert out.returncode == 0 and "Order 1.0.1" in out.stdout, out.stderr
        with httpx.Client(base_url=served.api, headers=auth, timeout=30) as client:
            for code, version in (("a", None), ("b", None), ("c", "3.0.0")):
                body = {
                    "source": TICKET.format(code=code),
                    **({"version": version} if version else {}),
                }
                assert client.post("/deploy", json=body).status_code == 201
            r = client.put("/deploy/order/routes", json={"weights": {"1.0.0": 90, "1.0.1": 10}})
            assert r.status_code == 200, r.text
            r = client.put("/deploy/ticket/routes", json={"weights": {"1.0.0": 50, "3.0.0": 50}})
            assert r.status_code == 200, r.text
            orders = [
                client.post(
                    "/models/orders", json={"customer_id": f"c{i}", "items": [{"price": i + 1}]}
                ).json()["id"]
                for i in range(60)
            ]
            tickets = [
                client.post("/models/tickets", json={"title": f"t{i}"}).json()["id"]
                for i in range(30)
            ]
        before = state(served, token)
        order_answers = answers(served, "orders", orders)
        ticket_codes = [
            httpx.get(f"{served.api}/models/tickets/{id}", params={"command": "which"}).json()
            for id in tickets
        ]
        assert {v for v, _ in order_answers} == {"1.0.0", "1.0.1"}
        assert {c["code"] for c in ticket_codes} == {"a", "c"}
        # The last change is acknowledged, then the process is killed at once.
        r = httpx.post(
            f"{served.api}/deploy/ticket/rollback", json={"version": "1.0.0"}, headers=auth
        )
        assert r.status_code == 200 and r.json()["routes"] == {"1.0.0": 100.0}
    finally:
        assert stop(served.proc, signal.SIGKILL) == -signal.SIGKILL
    before["models"]["Ticket"].update(active="1.0.0", routes={"1.0.0": 100.0})
    before["history"].append(("rollback", ["Ticket"], ["1.0.0"]))

    # The same command as before: the notebook is redeployed at start, unchanged.
    again = start_serve(tmp_path, "orders_service.ipynb")
    try:
        assert any("restored 5 model version(s)" in line for line in again.lines), again.lines
        after = state(again, token)
        assert after["models"] == before["models"]
        assert before["models"]["Order"]["routes"] == {"1.0.0": 90.0, "1.0.1": 10.0}
        assert after["history"] == before["history"]  # the restart published nothing new
        assert answers(again, "orders", orders) == order_answers
        assert [
            httpx.get(f"{again.api}/models/tickets/{id}", params={"command": "which"}).json()
            for id in tickets
        ] == [{"code": "a"}] * len(tickets)
        health = httpx.get(f"{again.api}/health", timeout=10).json()
        assert health["status"] == "ok" and "restore" not in health
    finally:
        stop(again.proc, signal.SIGKILL)
