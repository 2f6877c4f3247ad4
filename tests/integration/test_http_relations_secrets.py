"""Relations, commands and secrets over real HTTP (``host.serve(port=0)`` on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from microlib_kernel import Host, Model, Secret, command, relation
from tests.host_support import HostOptions

CARD = "4111-1111-1111-1111"


def refund(wallet: Any, amount: float = 0.0) -> dict:
    return {"refunded": amount}


def make_models() -> dict[str, type[Model]]:
    class Customer(Model, endpoint="customers", datasource="memory://"):
        name: str
        wallets = relation("Wallet", "one_to_many", foreign_key="customer_id")

    class Wallet(
        Model, endpoint="wallets", commands={"refund": {"fn": refund, "acl": ["billing"]}}
    ):
        customer_id: str | None = None
        card: Secret[str]
        customer = relation("Customer", "many_to_one", foreign_key="customer_id")

        @command(acl=["billing"])
        def card_number(self) -> dict:
            return {"card": self.card.reveal()}

    return {"Customer": Customer, "Wallet": Wallet}


@pytest.fixture
def host_options(monkeypatch: pytest.MonkeyPatch) -> HostOptions:
    """A DuckDB host (the secrets' store) with a secret key in its environment."""
    monkeypatch.setenv("MICROLIB_SECRET_KEY", Fernet.generate_key().decode())
    return HostOptions("duckdb:///http.duckdb")


@pytest.fixture
def api(host: Host) -> Iterator[httpx.Client]:
    for cls in make_models().values():
        host.publish(cls)
    url = host.serve(port=0)
    with httpx.Client(base_url=f"{url}{host.settings.api_root}", timeout=10) as client:
        yield client


def test_relations_both_ways_and_missing_ones(api: httpx.Client) -> None:
    customer = api.post("/models/customers", json={"name": "ada"}).json()
    wallet = api.post("/models/wallets", json={"customer_id": customer["id"], "card": CARD}).json()
    lonely = api.post("/models/wallets", json={"card": CARD}).json()
    r = api.get(f"/models/wallets/{wallet['id']}?relation=customer")
    assert r.status_code == 200 and r.json() == {"wallet": wallet, "customer": customer}
    assert api.get(f"/models/wallets/{wallet['id']}/customer").json() == customer
    r = api.get(f"/models/customers/{customer['id']}/wallets")  # memory -> duckdb
    assert r.status_code == 200 and [w["id"] for w in r.json()] == [wallet["id"]]
    r = api.get(f"/models/wallets/{lonely['id']}?relation=customer")
    assert r.status_code == 200
    assert r.json()["customer"] is None and "customer_id is not set" in r.json()["reason"]
    r = api.get(f"/models/wallets/{lonely['id']}/customer")
    assert r.status_code == 200 and r.json() is None
    assert api.get(f"/models/wallets/{wallet['id']}?relation=nope").status_code == 404
    assert api.get(f"/models/wallets/{wallet['id']}/nope").status_code == 404


def test_command_acl_over_http(api: httpx.Client) -> None:
    wallet = api.post("/models/wallets", json={"card": CARD}).json()
    wid = wallet["id"]
    r = api.get(f"/models/wallets/{wid}?command=card_number")
    assert r.status_code == 403
    r = api.get(
        f"/models/wallets/{wid}?command=card_number", headers={"X-Microlib-Roles": "billing"}
    )
    assert r.status_code == 200 and r.json() == {"card": CARD}  # revealed, on purpose
    r = api.patch(
        f"/models/wallets/{wid}/refund", json={"amount": 2}, headers={"X-Microlib-Roles": "billing"}
    )
    assert r.status_code == 200 and r.json() == {"refunded": 2}
    r = api.patch(f"/models/wallets/{wid}/refund", json={"amount": 2})
    assert r.status_code == 403
    assert api.patch(f"/models/wallets/{wid}/nope", json={}).status_code == 404


def test_secrets_are_masked_in_every_response(api: httpx.Client) -> None:
    r = api.post("/models/wallets", json={"card": CARD})
    assert r.status_code == 201 and r.json()["card"] == "***"
    wid = r.json()["id"]
    assert api.get(f"/models/wallets/{wid}").json()["card"] == "***"
    r = api.patch(f"/models/wallets/{wid}", json={"card": "5500-0000-0000-0004"})
    assert r.status_code == 200 and r.json()["card"] == "***"
    assert api.get("/models/wallets").json()[0]["card"] == "***"
    r = api.post("/sql", json={"sql": "SELECT card, card AS x, * FROM wallets"})
    assert r.status_code == 200 and r.json()["rows"][0][:2] == ["***", "***"]
    r = api.post("/models/wallets", json={"card": 12345678})  # the wrong type
    assert r.status_code == 400 and "12345678" not in r.text
    assert api.get("/models/wallets?card=x").status_code == 400
    bodies = [api.get(p).text for p in ("/config", "/openapi.json", f"/models/wallets/{wid}")]
    for text in bodies:
        assert CARD not in text and "5500-0000-0000-0004" not in text and "mlsec1:" not in text
    config = json.loads(bodies[0])
    wallet = next(m for m in config["models"] if m["name"] == "Wallet")
    assert set(wallet["commands"]) == {"card_number", "refund"}
    assert set(wallet["relations"]) == {"customer"}
