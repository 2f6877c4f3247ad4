"""A model class compiles into a ModelSpec: data, checked where the class is written."""

from __future__ import annotations

import json
import warnings

import pytest
from pydantic import Field

from microlib_kernel import MicrolibError, Model, command, port, relation
from microlib_kernel.domain.model import default_endpoint
from tests.models import make_models


def test_spec_is_data() -> None:
    Order, Customer = make_models()
    spec = Order.spec()
    assert spec.name == "Order"
    assert spec.endpoint == "orders"
    assert spec.event_prefix == "order"
    assert set(spec.fields) == {"customer_id", "items", "total", "status", "code"}
    assert spec.fields["items"].required and not spec.fields["total"].required
    assert spec.fields["total"].default == 0.0
    assert spec.fields["code"].frozen
    assert spec.fields["items"].type.kind == "list"
    assert spec.fields["status"].type.kind == "string"
    assert spec.hooks == {"on_update", "on_delete"}
    assert spec.commands["summary"].acl == ("read",)
    assert json.loads(json.dumps(spec.to_json()))["endpoint"] == "orders"
    assert Order.spec() == Order.spec()
    assert Customer.spec().fields["address"].type.kind == "struct"


def test_ports_relations_commands_are_declared() -> None:
    class Order(Model, endpoint="orders"):
        customer_id: str | None = None
        customer = relation("Customer", "many_to_one", foreign_key="customer_id")
        pay = port(
            "payments.authorize",
            consumes="order.approved",
            produces="order.paid",
            undo="payments.cancel",
            timeout=2.0,
            retries=2,
        )

        @command
        def bare(self) -> None:
            return None

    spec = Order.spec()
    assert spec.ports["pay"].adapter == "payments.authorize"
    assert spec.ports["pay"].retries == 2
    assert spec.relations["customer"].kind == "many_to_one"
    assert spec.commands["bare"].acl == ()
    assert spec.to_json()["ports"]["pay"]["undo"] == "payments.cancel"


def test_unknown_fields_are_rejected() -> None:
    Order, _ = make_models()
    with pytest.raises(ValueError, match="Extra inputs"):
        Order(items=[{}], colour="red")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("id: str = 'x'", "set by the framework"),
        ("revision: int = 1", "set by the framework"),
        ("update: int = 1", "hide the framework"),
    ],
)
def test_framework_names_are_refused(body: str, message: str) -> None:
    ns: dict = {"Model": Model}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic's own "shadows an attribute" warning
        with pytest.raises(TypeError, match=message):
            exec(f"class Bad(Model, endpoint='bads'):\n    {body}\n", ns)


def test_bad_declarations_fail_at_class_definition() -> None:
    with pytest.raises(TypeError, match="endpoint"):

        class Bad(Model, endpoint="Not A Table"):
            x: int = 0

    with pytest.raises(TypeError, match="foreign_key 'nope'"):

        class Bad2(Model, endpoint="bad2"):
            rel = relation("Other", "many_to_one", foreign_key="nope")

    with pytest.raises(TypeError, match="relation kind"):
        relation("Other", "sideways", foreign_key="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timeout"):
        port("a.b", timeout=-1)
    with pytest.raises(TypeError, match="adapter"):
        port("noname")
    with pytest.raises(TypeError, match="circuit_breaker"):
        port("a.b", circuit_breaker={"calls": 5, "wat": 1})


def test_unpublished_model_says_so() -> None:
    Order, _ = make_models()
    import asyncio

    with pytest.raises(MicrolibError, match="not published"):
        asyncio.run(Order.create(items=[{}]))


def test_default_endpoint() -> None:
    assert default_endpoint("Order") == "orders"
    assert default_endpoint("OrderItem") == "order_items"
    assert default_endpoint("Category") == "categories"
    assert default_endpoint("Address") == "addresses"

    class Thing(Model):
        size: int = Field(default=1, ge=0)

    assert Thing.spec().endpoint == "things"
