"""Relations on a real host: every kind, both directions, across datasources."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import BaseModel, Field

from microlib_kernel import Conflict, DeployRefused, Host, Model, NotFound, ValidationFailed
from microlib_kernel import relation as rel

pytestmark = pytest.mark.anyio


class Line(BaseModel):
    product_id: str
    qty: int = 1


def make_shop() -> SimpleNamespace:
    """Customer on memory://, the rest on the host's DuckDB file."""

    class Customer(Model, endpoint="customers", datasource="memory://"):
        name: str
        orders = rel("Order", "one_to_many", foreign_key="customer_id")
        profile = rel("Profile", "one_to_one", foreign_key="customer_id")  # Profile holds it

    class Profile(Model, endpoint="profiles"):
        customer_id: str | None = None
        bio: str = ""
        customer = rel("Customer", "one_to_one", foreign_key="customer_id")  # this side holds it

    class Product(Model, endpoint="products"):
        name: str
        price: float = 0.0

    class Order(Model, endpoint="orders"):
        customer_id: str | None = None
        items: list[dict] = Field(default_factory=list)
        lines: list[Line] = Field(default_factory=list)
        product_ids: list[str] = Field(default_factory=list)
        customer = rel("Customer", "many_to_one", foreign_key="customer_id")
        products = rel("Product", "contains_many", foreign_key="product_id", array_key="items")
        line_products = rel("Product", "contains_many", foreign_key="product_id", array_key="lines")
        picks = rel("Product", "contains_many", foreign_key="product_ids")

    return SimpleNamespace(Customer=Customer, Profile=Profile, Product=Product, Order=Order)


@pytest.fixture
def shop(host: Host) -> SimpleNamespace:
    m = make_shop()
    host.publish(m.Customer)
    host.publish(m.Profile)
    host.publish(m.Product)
    host.publish(m.Order)
    return m


def mv(host: Host, name: str):  # the serving version, as the HTTP layer resolves it
    entry = host.registry.get(name)
    return entry.get(entry.active)


async def test_many_to_one_and_one_to_many_across_datasources(host: Host, shop) -> None:
    c = await shop.Customer.create(name="ada")  # memory://
    o1 = await shop.Order.create(customer_id=c.id)  # duckdb
    o2 = await shop.Order.create(customer_id=c.id)
    await shop.Order.create()  # someone else's
    assert (await o1.customer()) == c
    assert [o.id for o in await c.orders()] == [o1.id, o2.id]  # creation order
    assert host.repository("customers").store is not host.repository("orders").store


async def test_one_to_one_both_sides(host: Host, shop) -> None:
    c = await shop.Customer.create(name="ada")
    assert await c.profile() is None
    p = await shop.Profile.create(customer_id=c.id, bio="hello")
    assert (await c.profile()) == p  # the target holds the key
    assert (await p.customer()) == c  # this side holds it


async def test_contains_many_over_ids_and_over_items(shop) -> None:
    pen = await shop.Product.create(name="pen")
    ink = await shop.Product.create(name="ink")
    o = await shop.Order.create(
        items=[{"product_id": ink.id, "qty": 2}, {"product_id": pen.id}, {"product_id": ink.id}],
        lines=[{"product_id": pen.id}],
        product_ids=[pen.id, ink.id],
    )
    assert [p.name for p in await o.products()] == ["ink", "pen"]  # distinct, first seen
    assert [p.name for p in await o.line_products()] == ["pen"]  # items that are models
    assert [p.name for p in await o.picks()] == ["pen", "ink"]  # a list of ids


async def test_missing_targets_are_empty_with_a_reason(host: Host, shop) -> None:
    Order, Customer = shop.Order, shop.Customer
    lonely = await Order.create()
    assert await lonely.customer() is None
    r = await host.relations.lookup(mv(host, "Order"), lonely, "customer")
    assert r.value is None and r.reason == "Order.customer_id is not set"

    dangling = await Order.create(customer_id="06h0000000000000000000000")
    r = await host.relations.lookup(mv(host, "Order"), dangling, "customer")
    assert r.value is None and "no Customer with id" in r.reason

    c = await Customer.create(name="nobody")
    r = await host.relations.lookup(mv(host, "Customer"), c, "orders")
    assert r.value == [] and r.many and r.reason == "no Order refers to it"

    pen = await shop.Product.create(name="pen")
    o = await Order.create(items=[{"product_id": pen.id}, {"product_id": "gone"}, {"qty": 1}])
    r = await host.relations.lookup(mv(host, "Order"), o, "products")
    assert [p.name for p in r.value] == ["pen"] and r.reason.startswith("1 of 2 Product id(s)")
    r = await host.relations.lookup(mv(host, "Order"), await Order.create(), "picks")
    assert r.value == [] and "is empty" in r.reason

    # The target is unpublished: its data stays, the relation says why it is empty.
    linked = await Order.create(customer_id=c.id)
    host.unpublish("Customer")
    assert await linked.customer() is None
    r = await host.relations.lookup(mv(host, "Order"), linked, "customer")
    assert r.reason == "Customer is not published"
    host.unpublish("Order")
    r = await host.relations.lookup(host.registry.get("Customer").latest(), c, "orders")
    assert r.value == [] and r.reason == "Order is not published"


async def test_a_target_never_published(host: Host) -> None:
    class Invoice(Model, endpoint="invoices"):
        account_id: str | None = None
        account = rel("Account", "many_to_one", foreign_key="account_id")
        notes = rel("Note", "one_to_many", foreign_key="invoice_id")

    host.publish(Invoice)
    i = await Invoice.create(account_id="x1")
    assert await i.account() is None
    assert await i.notes() == []
    r = await host.relations.lookup(mv(host, "Invoice"), i, "notes")
    assert r.reason == "Note is not published"
    with pytest.raises(NotFound, match="Account is not published"):
        await i.account({"name": "acme"})


async def test_unknown_relation_is_not_found(host: Host, shop) -> None:
    o = await shop.Order.create()
    with pytest.raises(NotFound, match="no relation 'nope'; relations: customer"):
        await host.relations.lookup(mv(host, "Order"), o, "nope")
    with pytest.raises(NotFound):
        await host.loop.call(host.relations.resolve, mv(host, "Order"), o, "nope", [])


async def test_create_through_one_to_many_and_one_to_one(host: Host, shop) -> None:
    c = await shop.Customer.create(name="ada")
    made = await c.orders({"items": []}, {"product_ids": []})
    assert [o.customer_id for o in made] == [c.id, c.id]
    assert {o.id for o in await c.orders()} == {o.id for o in made}
    with pytest.raises(ValidationFailed, match=r"sets Order\.customer_id itself"):
        await c.orders({"customer_id": "someone-else"})
    with pytest.raises(ValidationFailed):
        await c.orders({"items": "not a list"}, {})  # all or nothing
    assert len(await c.orders()) == 2

    p = await c.profile({"bio": "hi"})
    assert p.customer_id == c.id and (await c.profile()) == p
    with pytest.raises(Conflict, match="already has a Profile"):
        await c.profile({"bio": "again"})


async def test_create_through_many_to_one_links_this_instance(host: Host, shop) -> None:
    events = []
    host.events.on("*.created", lambda e: events.append(e.name))
    o = await shop.Order.create()
    c = await o.customer({"name": "new customer"})
    assert c.name == "new customer"
    fresh = await shop.Order.find(o.id)
    assert fresh.customer_id == c.id and fresh.revision == o.revision + 1
    assert (await fresh.customer()) == c
    with pytest.raises(Conflict, match="changed since"):  # o is a stale snapshot now
        await o.customer({"name": "another"})
    with pytest.raises(ValidationFailed, match="links one Customer"):
        await fresh.customer({"name": "a"}, {"name": "b"})
    with pytest.raises(ValidationFailed, match="dicts"):
        await fresh.customer("ada")  # type: ignore[arg-type]
    await host.idle()
    assert events.count("customer.created") == 1  # nothing was created by the refusals


async def test_create_through_contains_many_appends_links(shop) -> None:
    o = await shop.Order.create(items=[{"product_id": "p0", "qty": 1}])
    made = await o.products({"name": "pen"}, {"name": "ink"})
    fresh = await shop.Order.find(o.id)
    assert fresh.items == [{"product_id": "p0", "qty": 1}] + [{"product_id": p.id} for p in made]
    picks = await fresh.picks({"name": "cap"})
    again = await shop.Order.find(o.id)
    assert again.product_ids == [picks[0].id]
    assert [p.name for p in await again.picks()] == ["cap"]


async def test_a_failed_link_removes_what_it_created(host: Host, shop) -> None:
    o = await shop.Order.create()
    before = await shop.Product.count()
    # The products are created first; when linking them into the order fails, they go.
    repo = host.repository("orders")
    original = repo.update

    async def refuse(*args, **kwargs):
        raise ValidationFailed("refused for the test")

    repo.update = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(ValidationFailed, match="refused for the test"):
            await o.line_products({"name": "orphan?"})
    finally:
        repo.update = original  # type: ignore[method-assign]
    assert await shop.Product.count() == before


async def test_publish_refuses_a_relation_whose_target_lacks_the_key(host: Host, shop) -> None:
    class Warehouse(Model, endpoint="warehouses"):
        name: str = ""
        stock = rel("Product", "one_to_many", foreign_key="warehouse_id")

    with pytest.raises(DeployRefused, match="Product has no field 'warehouse_id'"):
        host.publish(Warehouse)

    with pytest.raises(TypeError, match="is not a field"):

        class Broken(Model):
            customer = rel("Customer", "many_to_one", foreign_key="missing")


async def test_relation_follows_the_target_route(host: Host, shop) -> None:
    c = await shop.Customer.create(name="ada")
    o = await shop.Order.create(customer_id=c.id)

    class Customer(Model, endpoint="customers", datasource="memory://"):
        name: str
        vip: bool = False

    host.publish(Customer)  # 1.0.1 serves now
    got = await o.customer()
    assert type(got) is Customer and got.vip is False and got.id == c.id
