"""Commands on a real host: ACL, arguments, sync and async, commands given as functions."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from microlib_kernel import Forbidden, Host, Model, NotFound, ValidationFailed, command
from tests.host_support import HostOptions

pytestmark = pytest.mark.anyio


def refund(order: Any, amount: float = 0.0) -> dict:
    """Refund part of the order."""
    return {"refunded": amount, "of": order.total}


async def close(order: Any) -> None:
    await order.update(status="CLOSED")


def make_order() -> type[Model]:
    class Order(
        Model,
        endpoint="orders",
        commands={
            "refund": {"fn": refund, "acl": ["billing", "admin"]},
            "close": close,  # open: no ACL
        },
    ):
        total: float = 0.0
        status: str = "OPEN"

        @command(acl=["write", "approve"])
        async def approve(self, note: str = "") -> None:
            await self.update(status=f"APPROVED{note}")

        @command(acl="read")
        def summary(self) -> dict:
            return {"summary": f"{self.id}:{self.total}", "thread": threading.current_thread().name}

        @command
        def open_to_all(self) -> str:
            return "ok"

        @command(acl=["admin"])
        async def purge(self) -> None:
            await self.delete()

        @command(acl=["write"])
        def check(self, limit: float) -> dict:
            if self.total > limit:
                raise ValueError(f"total {self.total} is over {limit}")
            return {"ok": True}

    return Order


@pytest.fixture
def host_options() -> HostOptions:
    return HostOptions("memory://")


@pytest.fixture
def Order(host: Host) -> type[Model]:
    cls = make_order()
    host.publish(cls)
    return cls


async def test_acl_allows_denies_and_reports(host: Host, Order) -> None:
    denied = []
    Order.on("order.command_denied", denied.append)
    o = await Order.create(total=3.0)
    assert (await o.run_command("summary", roles=["read"]))["summary"] == f"{o.id}:3.0"
    assert (await o.run_command("summary", roles="read, other"))["summary"]  # "a,b" works
    with pytest.raises(Forbidden, match="needs one of the roles write, approve") as info:
        await o.run_command("approve", roles=["read"])
    assert info.value.status == 403 and info.value.details["acl"] == ["write", "approve"]
    with pytest.raises(Forbidden, match="none given"):
        await o.run_command("summary", roles=[])
    await host.idle()
    assert [e.data for e in denied] == [
        {"command": "approve", "roles": ["read"], "acl": ["write", "approve"]},
        {"command": "summary", "roles": [], "acl": ["read"]},
    ]
    assert denied[0].model == "Order" and denied[0].model_id == o.id
    assert (await Order.find(o.id)).status == "OPEN"  # nothing ran
    assert await o.run_command("open_to_all", roles=[]) == "ok"  # no ACL: open


async def test_unknown_command_is_not_found(Order) -> None:
    o = await Order.create()
    with pytest.raises(NotFound, match="no command 'nope'; commands: "):
        await o.run_command("nope")
    with pytest.raises(NotFound):
        await o.run_command("update")  # a framework method is not a command


async def test_the_owner_has_every_role(Order) -> None:
    o = await Order.create()
    after = await o.run_command("approve", note="!")  # roles=None: the Python caller
    assert after.status == "APPROVED!" and after.revision == 2  # None -> the instance after
    again = await (await Order.find(o.id)).approve()  # a direct call works too
    assert again is None and (await Order.find(o.id)).revision == 3


async def test_arguments_are_checked_and_value_errors_refuse(Order) -> None:
    o = await Order.create(total=10.0)
    assert await o.run_command("check", limit=20) == {"ok": True}
    with pytest.raises(ValidationFailed, match="bad arguments for command 'check'"):
        await o.run_command("check")
    with pytest.raises(ValidationFailed, match="bad arguments"):
        await o.run_command("check", limit=1, extra=2)
    with pytest.raises(ValidationFailed, match=r"refused: total 10\.0 is over 5"):
        await o.run_command("check", limit=5)


async def test_sync_commands_run_off_the_host_loop(host: Host, Order) -> None:
    o = await Order.create()
    result = await o.run_command("summary")
    assert result["thread"] != host.loop.thread.name


async def test_a_command_that_deletes_its_instance_returns_none(Order) -> None:
    o = await Order.create()
    assert await o.run_command("purge", roles=["admin"]) is None
    with pytest.raises(NotFound):
        await Order.find(o.id)


async def test_commands_given_as_functions(Order) -> None:
    spec = Order.spec()
    assert sorted(spec.commands) == [
        "approve",
        "check",
        "close",
        "open_to_all",
        "purge",
        "refund",
        "summary",
    ]
    assert spec.to_json()["commands"]["refund"] == {
        "name": "refund",
        "acl": ["billing", "admin"],
        "description": "Refund part of the order.",
    }
    o = await Order.create(total=9.0)
    assert await o.run_command("refund", roles=["billing"], amount=2.5) == {
        "refunded": 2.5,
        "of": 9.0,
    }
    assert o.refund(amount=1) == {"refunded": 1, "of": 9.0}  # a method of the class
    with pytest.raises(Forbidden):
        await o.run_command("refund", roles=["read"])
    with pytest.raises(ValidationFailed, match="bad arguments"):
        await o.run_command("refund", roles=["admin"], amount=1, nope=2)
    closed = await o.run_command("close", roles=[])  # async, open, returns None
    assert closed.status == "CLOSED"


def test_bad_commands_mappings_fail_where_the_class_is_written() -> None:
    with pytest.raises(TypeError, match="takes a dict"):

        class A(Model, commands=[refund]):  # type: ignore[arg-type]
            pass

    with pytest.raises(TypeError, match="a command is a function"):

        class B(Model, commands={"x": 42}):
            pass

    with pytest.raises(TypeError, match="unknown command option"):

        class C(Model, commands={"x": {"fn": refund, "roles": ["a"]}}):
            pass

    with pytest.raises(TypeError, match="clashes with a field"):

        class D(Model, commands={"total": refund}):
            total: float = 0.0

    with pytest.raises(TypeError, match="hide the framework"):

        class E(Model, commands={"update": refund}):
            pass

    with pytest.raises(TypeError, match="acl must be role names"):

        class F(Model, commands={"x": {"fn": refund, "acl": [1]}}):
            pass

    class G(Model, commands={"x": {"command": refund, "acl": "ops"}}):  # Aegis' key
        pass

    assert G.spec().commands["x"].acl == ("ops",)
