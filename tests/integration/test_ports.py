"""Ports on a real host: adapters, services, orchestration, retries, sagas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from microlib_kernel import (
    Host,
    Model,
    NotFound,
    PortFailed,
    PortTimeout,
    ValidationFailed,
    port,
)
from microlib_kernel.errors import PortUnbound
from tests.host_support import HostOptions
from tests.ports_support import Services, event_names, order_model, register_adapters

pytestmark = pytest.mark.anyio


@pytest.fixture
def host_options() -> HostOptions:
    return HostOptions("memory://")


@pytest.fixture
def services(host: Host) -> Services:
    s = Services()
    s.register(host)
    register_adapters(host)
    return s


async def approve(host: Host, Order: type[Model]) -> Any:
    order = await Order.create()
    await order.emit("order.approved")
    await host.idle()
    return await Order.find(order.id)


async def test_happy_flow_chains_ports_through_events(host: Host, services: Services) -> None:
    Order = order_model()
    host.publish(Order)
    order = await approve(host, Order)
    assert order.port_flow == ["authorize", "pick", "ship", "complete"]
    assert order.status == "COMPLETE" and order.compensation is None
    assert order.payment_id and order.pick_id and order.ship_id
    assert services.journal == ["payments.authorize", "inventory.pick", "shipping.ship"]
    flow_events = {"payment.authorized", "order.picked", "order.shipped", "order.completed"}
    produced = [n for n in event_names(host) if n in flow_events]
    assert produced == ["payment.authorized", "order.picked", "order.shipped", "order.completed"]
    # One write per port: the adapter's changes and port_flow together.
    assert order.revision == 1 + 4


async def test_direct_call_returns_the_instance_after_the_port(
    host: Host, services: Services
) -> None:
    Order = order_model()
    host.publish(Order)
    order = await Order.create()
    after = await order.authorize()
    assert after.payment_id == "authorize-1" and after.port_flow == ["authorize"]
    await host.idle()  # produces payment.authorized: the flow goes on from there
    assert (await Order.find(order.id)).port_flow == ["authorize", "pick", "ship", "complete"]


async def test_adapter_rebinding_needs_no_republish(host: Host, services: Services) -> None:
    Order = order_model()
    host.publish(Order)
    order = await Order.create()
    assert (await order.authorize()).payment_id == "authorize-1"
    host.adapters.register("payments.authorize", lambda order: {"payment_id": "rebound"})
    assert (await order.authorize()).payment_id == "rebound"
    # A second model bound to the same adapter name sees the new binding too.

    class Invoice(Model, endpoint="invoices"):
        payment_id: str | None = None
        charge = port("payments.authorize")

    host.publish(Invoice)
    invoice = await Invoice.create()
    assert (await invoice.charge()).payment_id == "rebound"
    assert host.registry.get("Order").deploys == 1  # no republish happened


async def test_services_are_injected_and_a_missing_one_is_a_clear_error(host: Host) -> None:
    register_adapters(host)
    Order = order_model()
    host.publish(Order)
    report = {r["port"]: r for r in host.ports.report()}
    assert not report["authorize"]["ok"]
    assert "needs service 'payments', which is not registered" in " ".join(
        report["authorize"]["problems"]
    )
    assert report["complete"]["ok"]  # needs no service
    order = await Order.create()
    with pytest.raises(PortUnbound, match=r"needs service 'payments'.*host.services.register"):
        await order.authorize()
    # Nothing ran, so nothing was compensated: the flow can go on once it is bound.
    again = await Order.find(order.id)
    assert again.compensation is None and again.port_flow == []
    assert host.ports.status("Order", "authorize")["last_error"]
    s = Services()
    s.register(host)
    assert (await again.authorize()).payment_id
    assert all(r["ok"] for r in host.ports.report())


async def test_unknown_adapter_is_reported_and_fails_clearly(host: Host) -> None:
    class Thing(Model, endpoint="things"):
        go = port("nowhere.go")

    host.publish(Thing)
    assert host.ports.status("Thing", "go")["problems"] == ["adapter nowhere.go is not registered"]
    thing = await Thing.create()
    with pytest.raises(PortUnbound, match=r"no adapter named 'nowhere.go'"):
        await thing.go()


async def test_timeout_then_retry_succeeds_and_late_results_are_discarded(host: Host) -> None:
    calls: list[str] = []

    def slow_then_fast(item: Any) -> dict[str, Any]:
        calls.append("call")
        if len(calls) == 1:
            time.sleep(0.4)  # a sync adapter in a worker thread: it cannot be interrupted
            return {"note": "late"}
        return {"note": "second"}

    class Item(Model, endpoint="items"):
        note: str | None = None
        fetch = port("remote.fetch", timeout=0.1, retries=1, backoff=0.01)

    host.adapters.register("remote.fetch", slow_then_fast)
    host.publish(Item)
    item = await Item.create()
    after = await item.fetch()
    assert after.note == "second" and after.port_flow == ["fetch"]
    timeouts = host.events.recent("item.port.timeout")
    assert len(timeouts) == 1 and timeouts[0].data["attempt"] == 1
    await asyncio.sleep(0.5)  # the first attempt ends now; its result must be ignored
    final = await Item.find(item.id)
    assert final.note == "second" and final.port_flow == ["fetch"] and final.revision == 2


async def test_a_hanging_async_adapter_is_cancelled(host: Host) -> None:
    cancelled = asyncio.Event()

    async def hang(item: Any) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    class Item(Model, endpoint="items"):
        fetch = port("remote.hang", timeout=0.05)

    host.adapters.register("remote.hang", hang)
    host.publish(Item)
    item = await Item.create()
    with pytest.raises(PortTimeout, match=r"timed out after 0.05 s \(1 attempt\)"):
        await item.fetch()
    await host.loop.call(asyncio.wait_for, cancelled.wait(), 2)
    names = event_names(host, "item.*")
    assert "item.port.timeout" in names and "item.port.retry_failed" in names


async def test_retries_exhausted_compensate_in_exact_reverse_order(
    host: Host, services: Services
) -> None:
    Order = order_model(ship={"retries": 2})
    host.publish(Order)
    services.shipping.set("ship", "fail")
    order = await approve(host, Order)
    assert services.journal == [
        "payments.authorize",
        "inventory.pick",
        "shipping.ship",
        "shipping.ship",
        "shipping.ship",  # retries=2: three attempts
        "inventory.restock",  # then the saga, last completed port first
        "payments.cancel",
    ]
    assert order.compensation == "complete" and order.port_flow == []
    assert order.payment_id is None  # the undo adapter's changes were saved
    names = event_names(host, "order.*")
    saga = [n for n in names if n.startswith(("order.port.", "order.undo."))]
    assert saga == ["order.port.retry_failed", "order.undo.started", "order.undo.worked"]
    worked = host.events.recent("order.undo.worked")[0]
    assert worked.data == {"undone": ["pick", "authorize"]}


async def test_direct_call_failure_compensates_then_raises(host: Host) -> None:
    journal: list[str] = []

    def step(name: str, fail: bool = False) -> Any:
        def adapter(job: Any) -> None:
            journal.append(name)
            if fail:
                raise RuntimeError(f"{name} is down")

        return adapter

    class Job(Model, endpoint="jobs"):
        a = port("job.a", undo="job.undo_a")
        b = port("job.b", undo="job.undo_b")
        c = port("job.c", undo="job.undo_c", retries=1, backoff=0.01)

    for name in ("a", "b", "undo_a", "undo_b", "undo_c"):
        host.adapters.register(f"job.{name}", step(name))
    host.adapters.register("job.c", step("c", fail=True))
    host.publish(Job)
    job = await (await (await Job.create()).a()).b()
    with pytest.raises(
        PortFailed, match=r"job.c failed \(2 attempts\): RuntimeError: c is down"
    ) as info:
        await job.c()
    assert info.value.status == 502
    # By the time the call raises, the saga has run: c never completed, so it is not undone.
    assert journal == ["a", "b", "c", "c", "undo_b", "undo_a"]
    after = await Job.find(job.id)
    assert after.compensation == "complete" and after.port_flow == []


async def test_undo_failure_stops_the_compensation(host: Host, services: Services) -> None:
    Order = order_model()
    host.publish(Order)
    services.shipping.set("ship", "fail")
    services.inventory.set("restock", "fail")
    order = await approve(host, Order)
    assert services.journal == [
        "payments.authorize",
        "inventory.pick",
        "shipping.ship",
        "inventory.restock",  # fails: payments.cancel is never called
    ]
    assert order.compensation == "incomplete"
    assert order.port_flow == ["authorize", "pick"]  # what remains to compensate
    failed = host.events.recent("order.undo.failed")[0].data
    assert failed["port"] == "pick" and failed["remaining"] == ["authorize", "pick"]
    assert "inventory.restock is down" in failed["error"]
    assert "order.undo.worked" not in event_names(host)
    # Fix the service and compensate by hand: the rest is undone.
    services.inventory.set("restock", "ok")
    order = await order.undo()
    assert order.compensation == "complete" and order.port_flow == []
    assert services.journal[-2:] == ["inventory.restock", "payments.cancel"]


async def test_ports_without_undo_are_dropped_from_the_saga(host: Host) -> None:
    journal: list[str] = []

    class Job(Model, endpoint="jobs"):
        a = port("job.a", undo="job.undo_a")
        b = port("job.b")
        c = port("job.c", undo="job.undo_c")

    for name in ("a", "b", "c", "undo_a", "undo_c"):
        host.adapters.register(f"job.{name}", lambda job, n=name: journal.append(n))
    host.publish(Job)
    job = await Job.create()
    for step in ("a", "b", "c"):
        job = await getattr(job, step)()
    assert job.port_flow == ["a", "b", "c"]
    job = await job.undo()
    assert journal[-2:] == ["undo_c", "undo_a"]
    assert job.port_flow == [] and job.compensation == "complete"
    started = host.events.recent("job.undo.started")[0].data
    assert started == {"port_flow": ["a", "b", "c"], "reason": "requested"}


async def test_a_compensated_instance_runs_no_more_event_triggered_ports(
    host: Host, services: Services
) -> None:
    Order = order_model()
    host.publish(Order)
    order = await Order.create()
    order = await order.undo()  # nothing to undo: complete at once
    assert order.compensation == "complete"
    await order.emit("order.approved")
    await host.idle()
    assert services.journal == []
    # Direct calls still work (and still chain events, which it ignores).
    order = await order.authorize()
    await host.idle()
    assert services.journal == ["payments.authorize"]
    assert (await Order.find(order.id)).port_flow == ["authorize"]


async def test_disabled_port_is_a_no_op(host: Host, services: Services) -> None:
    Order = order_model(pick={"disabled": True})
    host.publish(Order)
    order = await approve(host, Order)
    assert order.port_flow == ["authorize"]  # the flow stops at the disabled port
    same = await order.pick()
    assert same is order
    assert "inventory.pick" not in services.journal
    assert "order.picked" not in event_names(host)
    assert not any(s.key[2] == "pick" for s in host.ports.orchestrator.subscriptions("Order"))


async def test_three_republishes_never_duplicate_listeners(host: Host, services: Services) -> None:
    for _ in range(3):
        host.publish(order_model())
    Order = order_model()
    host.publish(Order)
    subs = host.ports.orchestrator.subscriptions("Order")
    assert sorted(s.key[2] for s in subs) == ["authorize", "complete", "pick", "ship"]
    port_subs = [s for s in host.events.subscriptions() if s.owner == ("ports", "order")]
    assert len(port_subs) == 4
    await approve(host, Order)
    assert services.journal == ["payments.authorize", "inventory.pick", "shipping.ship"]


def order_v2() -> type[Model]:
    class Order(Model, endpoint="orders"):
        total: float = 10.0
        status: str = "PENDING"
        payment_id: str | None = None
        pick_id: str | None = None
        ship_id: str | None = None
        authorize = port("payments.v2", consumes="order.approved")

    return Order


async def test_the_serving_version_runs_the_port(host: Host, services: Services) -> None:
    Order = order_model()
    host.publish(Order)
    Order2 = order_v2()
    host.adapters.register("payments.v2", lambda o: {"payment_id": "v2"})
    host.publish(Order2)
    order = await approve(host, Order2)
    assert order.payment_id == "v2" and order.port_flow == ["authorize"]
    host.rollback("Order", "1.0.0")
    again = await approve(host, Order)
    assert again.payment_id.startswith("authorize-")
    assert again.port_flow == ["authorize", "pick", "ship", "complete"]


async def test_events_of_other_instances_or_models_do_not_run_ports(
    host: Host, services: Services
) -> None:
    Order = order_model()
    host.publish(Order)
    order = await Order.create()
    from microlib_kernel import Event

    await host.loop.call(
        host.publish_event, Event("order.approved", model="Customer", model_id=order.id)
    )
    await host.loop.call(host.publish_event, Event("order.approved", model_id="missing"))
    await host.loop.call(host.publish_event, Event("order.approved"))
    await host.idle()
    assert services.journal == []
    # "For" the instance: an event without a model but with its id runs the flow.
    await host.loop.call(host.publish_event, Event("order.approved", model_id=order.id))
    await host.idle()
    assert (await Order.find(order.id)).port_flow[-1] == "complete"


async def test_callback_turns_the_adapter_result_into_changes(host: Host) -> None:
    def keep_reference(item: Any, result: dict[str, Any]) -> dict[str, Any]:
        return {"ref": result["reference"].upper()}

    class Item(Model, endpoint="items"):
        ref: str | None = None
        fetch = port("remote.fetch", callback=keep_reference)

    host.adapters.register("remote.fetch", lambda item: {"reference": "abc", "noise": 1})
    host.publish(Item)
    item = await (await Item.create()).fetch()
    assert item.ref == "ABC" and item.port_flow == ["fetch"]


async def test_adapter_arguments_and_bad_results(host: Host) -> None:
    class Item(Model, endpoint="items"):
        size: int = 0
        resize = port("remote.resize", undo="remote.forget")
        broken = port("remote.broken")

    undone: list[str] = []
    host.adapters.register("remote.resize", lambda item, size, *, unit="cm": {"size": size})
    host.adapters.register("remote.forget", lambda item: undone.append(item.id))
    host.adapters.register("remote.broken", lambda item: {"size": "not a number"})
    host.publish(Item)
    item = await Item.create()
    item = await item.resize(5)
    assert item.size == 5
    item = await item.resize(size=7, unit="mm")
    assert item.size == 7
    with pytest.raises(ValidationFailed, match=r"arguments do not fit adapter remote\.resize"):
        await item.resize(1, 2, 3)
    # The adapter ran but its changes do not validate: the port is recorded (so the
    # saga compensates it) and the call fails.
    with pytest.raises(PortFailed, match="could not be saved: its changes do not validate"):
        await item.broken()
    after = await Item.find(item.id)
    assert after.compensation == "complete" and after.size == 7
    assert undone == [item.id, item.id]  # both resize runs were compensated


async def test_on_update_sees_user_changes_only(host: Host) -> None:
    seen: list[dict[str, Any]] = []

    class Item(Model, endpoint="items"):
        size: int = 0
        grow = port("remote.grow")

        def on_update(self, changes: dict[str, Any]) -> dict[str, Any]:
            seen.append(dict(changes))
            return {"size": changes["size"] * 10}  # a hook that rebuilds the dict

    host.adapters.register("remote.grow", lambda item: {"size": 2})
    host.publish(Item)
    item = await (await Item.create()).grow()
    assert seen == [{"size": 2}]
    assert item.size == 20 and item.port_flow == ["grow"]


async def test_unknown_port_and_deleted_instance(host: Host, services: Services) -> None:
    Order = order_model()
    host.publish(Order)
    mv = host.registry.get("Order").pick()
    order = await Order.create()
    with pytest.raises(NotFound, match="has no port 'nope'"):
        await host.loop.call(host.ports.call, mv, order, "nope", (), {})
    await order.delete()
    with pytest.raises(NotFound):
        await order.authorize()


async def test_config_shows_port_status(host: Host, services: Services) -> None:
    Order = order_model(authorize={"circuit_breaker": {"calls": 2}})
    host.publish(Order)
    entry = host.config()["models"][0]
    assert entry["ports"]["authorize"]["breaker"]["state"] == "closed"
    assert entry["ports"]["pick"]["breaker"] is None
    assert entry["ports"]["authorize"]["problems"] == []
