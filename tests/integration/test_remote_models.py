"""Remote models: host A's relations and adapters reach a model only host B serves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel import Host, Model, port, relation
from microlib_kernel.config import Settings
from microlib_kernel.errors import (
    MicrolibError,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from microlib_kernel.host.remote import RemoteInstance, parse_remote_models

pytestmark = pytest.mark.anyio


def customers_host(tmp_path: Path) -> Host:
    class Customer(Model, endpoint="customers"):
        name: str
        email: str | None = None

    class Invoice(Model, endpoint="invoices"):
        customer_id: str
        amount: float

    host = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource="memory://"))
    host.publish([Customer, Invoice])
    host.serve(port=0)
    return host


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Host, Host, type[Model]]]:
    b = customers_host(tmp_path)
    a = Host(
        settings=Settings.load(
            cwd=tmp_path, env={}, datasource="memory://",
            remote_models=f"Customer={b.url}, Invoice={b.url}",
        )
    )  # fmt: skip

    async def greet(order: Any, *, customer: Any) -> dict[str, Any]:
        who = await customer.get(order.customer_id)
        return {"note": f"hello {who.name}"}

    a.adapters.register("crm.greet", greet)

    class Order(Model, endpoint="orders"):
        customer_id: str
        note: str | None = None
        customer = relation("Customer", "many_to_one", foreign_key="customer_id")
        invoices = relation("Invoice", "one_to_many", foreign_key="customer_id")
        greet = port("crm.greet")

    a.publish(Order)
    a.serve(port=0)
    try:
        yield a, b, Order
    finally:
        a.close()
        b.close()


async def test_a_relation_reads_the_other_host(pair: tuple[Host, Host, type[Model]]) -> None:
    a, b, Order = pair
    with httpx.Client(base_url=b.api_url) as api_b:
        ann = api_b.post("/models/customers", json={"name": "Ann"}).json()
    order = await Order.create(customer_id=ann["id"])
    found = await order.customer()
    assert isinstance(found, RemoteInstance)
    assert (found.name, found.id) == ("Ann", ann["id"])
    # Over A's HTTP API too, as for a local relation.
    with httpx.Client(base_url=a.api_url) as api_a:
        body = api_a.get(f"/models/orders/{order.id}/customer").json()
    assert body["name"] == "Ann"


async def test_one_to_many_filters_on_the_other_host(
    pair: tuple[Host, Host, type[Model]],
) -> None:
    _, b, Order = pair
    order = await Order.create(customer_id="c-1")
    with httpx.Client(base_url=b.api_url) as api_b:
        for amount in (5, 7):
            api_b.post("/models/invoices", json={"customer_id": order.id, "amount": amount})
        api_b.post("/models/invoices", json={"customer_id": "someone-else", "amount": 1})
    invoices = await order.invoices()
    assert sorted(i.amount for i in invoices) == [5, 7]


async def test_a_missing_remote_instance_is_none_with_a_reason(
    pair: tuple[Host, Host, type[Model]],
) -> None:
    a, _, Order = pair
    order = await Order.create(customer_id="0123456789abcdef0123456789abcdef")
    mv = a.registry.get("Order").latest()
    result = await a.loop.call(a.relations.lookup, mv, order, "customer")
    assert result.value is None and "no Customer" in (result.reason or "")


async def test_an_adapter_gets_the_remote_model_as_a_service(
    pair: tuple[Host, Host, type[Model]],
) -> None:
    a, b, Order = pair
    with httpx.Client(base_url=b.api_url) as api_b:
        bob = api_b.post("/models/customers", json={"name": "Bob"}).json()
    order = await Order.create(customer_id=bob["id"])
    done = await order.greet()
    assert done.note == "hello Bob"
    remote = a.remotes["customer"]
    assert await a.loop.call(remote.count) == 1
    # The same errors as local calls.
    with pytest.raises(NotFound):
        await a.loop.call(remote.get, "0123456789abcdef0123456789abcdef")
    with pytest.raises(ValidationFailed) as bad:
        await a.loop.call(remote.create, {"email": "no name"})
    assert bad.value.errors and bad.value.errors[0]["loc"] == ["name"]


async def test_a_host_that_is_down_is_503_not_a_hang(
    pair: tuple[Host, Host, type[Model]],
) -> None:
    a, b, Order = pair
    order = await Order.create(customer_id="c-1")
    b.close()
    with pytest.raises(ServiceUnavailable, match="cannot be reached"):
        await order.customer()
    with httpx.Client(base_url=a.api_url) as api_a:
        r = api_a.get(f"/models/orders/{order.id}/customer")
    assert r.status_code == 503 and "Traceback" not in r.text


def test_remote_models_setting_is_checked() -> None:
    assert parse_remote_models("Customer=http://a:1/, Invoice=https://b") == {
        "Customer": "http://a:1",
        "Invoice": "https://b",
    }
    with pytest.raises(MicrolibError, match="Name=http"):
        parse_remote_models("Customer=ftp://x")


def test_a_bad_setting_leaves_nothing_open(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path}/data.duckdb"
    with pytest.raises(MicrolibError, match="Name=http"):
        Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url, remote_models="x"))
    Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url)).close()  # not locked
