"""The Host on a real DuckDB file: the Python API end to end."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from pydantic import Field

from microlib_kernel import (
    BadQuery,
    Conflict,
    DeployRefused,
    Host,
    Model,
    NotFound,
    ValidationFailed,
    Vetoed,
)
from tests.models import make_models

pytestmark = pytest.mark.anyio


@pytest.fixture
def models(host: Host) -> tuple[type[Model], type[Model]]:
    Order, Customer = make_models()
    host.publish(Customer)
    published = host.publish(Order)
    assert published[0].name == "Order" and published[0].version == "1.0.0"
    assert published[0].endpoint == "orders"
    return Order, Customer


async def test_crud(host: Host, models: tuple) -> None:
    Order, _ = models
    o = await Order.create(items=[{"sku": "a", "price": 3.5}])
    assert o.id and o.revision == 1 and o.version == "1.0.0"
    assert o.created_at == o.updated_at and o.port_flow == [] and o.compensation is None
    assert (await Order.find(o.id)) == o
    o2 = await o.update(items=[{"sku": "a", "price": 2.0}, {"sku": "b", "price": 1.0}])
    assert o2.total == 3.0 and o2.revision == 2  # on_update derived the total
    assert o2.updated_at > o2.created_at
    assert o.total == 0.0  # the old snapshot is unchanged
    listed = await Order.list(status="PENDING")
    assert [x.id for x in listed] == [o.id]
    assert await Order.count() == 1
    with pytest.raises(Vetoed, match="canceled or completed"):
        await o2.delete()
    o3 = await o2.update(status="CANCELED")
    gone = await o3.delete()
    assert gone.id == o.id
    with pytest.raises(NotFound):
        await Order.find(o.id)


async def test_validation_errors_carry_pydantic_details(models: tuple) -> None:
    Order, _ = models
    with pytest.raises(ValidationFailed) as info:
        await Order.create(items=[])
    assert info.value.errors[0]["loc"] == ["items"]
    with pytest.raises(ValidationFailed, match="Extra inputs"):
        await Order.create(items=[{}], colour="red")
    with pytest.raises(ValidationFailed, match="set by the framework"):
        await Order.create(items=[{}], id="mine")
    with pytest.raises(ValidationFailed, match="negative"):
        await Order.create(items=[{}], total=-1)
    with pytest.raises(ValidationFailed, match="Input should be"):
        await Order.create(items=[{}], status="LOST")
    o = await Order.create(items=[{}])
    with pytest.raises(ValidationFailed, match="frozen"):
        await o.update(code="Y")
    with pytest.raises(ValidationFailed, match="set by the framework"):
        await o.update(revision=9)
    assert await Order.count() == 1


async def test_stale_revision_is_a_conflict(models: tuple) -> None:
    Order, _ = models
    o = await Order.create(items=[{}])
    a = await Order.find(o.id)
    b = await Order.find(o.id)
    await a.update(status="APPROVED")
    with pytest.raises(Conflict, match="changed since"):
        await b.update(total=5)
    fresh = await Order.find(o.id)
    assert fresh.status == "APPROVED" and fresh.total == 0.0 and fresh.revision == 2


async def test_concurrent_updates_through_fresh_reads_lose_nothing(
    host: Host, models: tuple
) -> None:
    Order, _ = models
    o = await Order.create(items=[{}])
    repo = host.repository("orders")
    mv = host.registry.get("Order").latest()

    async def bump(i: int) -> None:
        # What the HTTP PATCH does: apply changes to the current state, serialised per id.
        await host.loop.call(repo.update, mv, o.id, {"items": [{"price": 1}] * (i + 1)})

    await asyncio.gather(*[bump(i) for i in range(30)])
    final = await Order.find(o.id)
    assert final.revision == 31


async def test_idempotent_create(host: Host, models: tuple) -> None:
    mv = host.registry.get("Order").latest()
    created = []
    host.events.on("order.created", lambda e: created.append(e.model_id))
    results = await asyncio.gather(
        *[
            host.loop.call(host.repository("orders").create, mv, {"items": [{}]}, id="key-1")
            for _ in range(5)
        ]
    )
    assert [r[1] for r in results].count(True) == 1
    assert {r[0].id for r in results} == {"key-1"}
    await host.idle()
    assert created == ["key-1"]
    with pytest.raises(ValidationFailed, match="invalid id"):
        await host.loop.call(host.repository("orders").create, mv, {"items": [{}]}, id="../x")


async def test_bad_ids_are_not_found(models: tuple) -> None:
    Order, _ = models
    for bad in ("../etc/passwd", "a/b", "", "x" * 300):
        with pytest.raises(NotFound):
            await Order.find(bad)


async def test_lifecycle_events(host: Host, models: tuple) -> None:
    Order, _ = models
    events = []
    Order.on("order.*", events.append)
    o = await Order.create(items=[{"price": 1}])
    o = await o.update(status="CANCELED")
    await o.delete()
    await o.emit("order.custom", {"k": 1})
    await host.idle()
    names = [e.name for e in events]
    assert names == ["order.created", "order.updated", "order.deleted", "order.custom"]
    created, updated, deleted, custom = events
    assert created.model == "Order" and created.model_id == o.id
    assert created.data["items"] == [{"price": 1}]
    assert updated.data["changes"] == {"status": "CANCELED"}
    assert updated.data["model"]["status"] == "CANCELED"
    assert deleted.data["id"] == o.id
    assert custom.data == {"k": 1}
    assert set(created.to_dict()) == {"id", "name", "model", "model_id", "time", "data"}


async def test_handlers_registered_twice_are_not_duplicated(host: Host, models: tuple) -> None:
    Order, _ = models
    seen = []

    def handler(e):  # the same function defined again, as when a cell re-runs
        seen.append(e.name)

    Order.on("order.created", handler)
    Order.on("order.created", handler)
    await Order.create(items=[{}])
    await host.idle()
    assert seen == ["order.created"]


async def test_a_failing_handler_never_fails_the_write(host: Host, models: tuple) -> None:
    Order, _ = models

    async def broken(e):
        raise RuntimeError("handler bug")

    Order.on("order.created", broken)
    o = await Order.create(items=[{}])
    await host.idle()
    assert (await Order.find(o.id)).id == o.id


async def test_list_paging_ordering_and_bad_queries(models: tuple) -> None:
    Order, _ = models
    for i in range(6):
        await Order.create(items=[{}], total=float(i))
    page = await Order.list(order="-total", limit=2, offset=1)
    assert [o.total for o in page] == [4.0, 3.0]
    assert [o.total for o in await Order.list(total=2)] == [2.0]
    assert await Order.count(status="PENDING") == 6
    with pytest.raises(BadQuery):
        await Order.list(colour="x")
    with pytest.raises(BadQuery):
        await Order.list(limit=-1)


async def test_sql_joins_params_and_read_only(host: Host, models: tuple) -> None:
    Order, Customer = models
    c = await Customer.create(name="ada", address={"city": "Oslo", "zip": 1}, tags=["vip"])
    await Order.create(items=[{"sku": "a"}], customer_id=c.id, total=3.0)
    await Order.create(items=[{"sku": "b"}], customer_id=c.id, total=4.0)
    r = host.sql(
        "SELECT c.name, sum(o.total) AS spent FROM orders o "
        "JOIN customers c ON o.customer_id = c.id WHERE c.name = $name GROUP BY c.name",
        {"name": "ada"},
    )
    assert r.columns == ["name", "spent"] and r.rows == [("ada", 7.0)]
    assert r.to_dicts() == [{"name": "ada", "spent": 7.0}]
    assert Order.sql("SELECT count(*) FROM orders WHERE total > ?", [3.5]).rows == [(1,)]
    nested = host.sql("SELECT address.city, tags[1], typeof(created_at) FROM customers").rows
    assert nested == [("Oslo", "vip", "TIMESTAMP WITH TIME ZONE")]
    for bad in (
        "DELETE FROM orders",
        "DROP TABLE orders",
        "SELECT 1; SELECT 2",
        "ATTACH 'x.db'",
        "COPY orders TO 'x.csv'",
        "PRAGMA version",
        "SET threads=1",
        "INSTALL httpfs",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELEC nonsense",
    ):
        with pytest.raises(BadQuery):
            host.sql(bad)
    assert "<table" in r._repr_html_() and "ada" in repr(r)


async def test_sql_sees_every_acknowledged_write(host: Host, models: tuple) -> None:
    Order, _ = models
    await asyncio.gather(*[Order.create(items=[{}]) for _ in range(200)])
    assert host.sql("SELECT count(*) FROM orders").rows == [(200,)]


async def test_models_on_other_datasources_join_in_sql(host: Host) -> None:
    class Note(Model, endpoint="notes", datasource="memory://"):
        text: str

    class Tag(Model, endpoint="tags", datasource="file:///tagdir"):
        note_id: str
        label: str

    host.publish(Note)
    host.publish(Tag)
    n = await Note.create(text="hello")
    await Tag.create(note_id=n.id, label="greeting")
    r = host.sql("SELECT n.text, t.label FROM notes n JOIN tags t ON t.note_id = n.id")
    assert r.rows == [("hello", "greeting")]
    await Tag.create(note_id=n.id, label="second")  # mirrors refresh after writes
    assert host.sql("SELECT count(*) FROM tags").rows == [(2,)]


async def test_unpublish_keeps_data_and_republish_serves_it(host: Host, models: tuple) -> None:
    Order, _ = models
    o = await Order.create(items=[{}])
    host.unpublish("order")
    assert host.registry.by_endpoint("orders") is None
    assert host.sql("SELECT count(*) FROM orders").rows == [(1,)]
    Order2, _ = make_models()
    assert host.publish(Order2)[0].version == "1.0.1"
    assert (await Order2.find(o.id)).id == o.id


async def test_schema_growth_and_refused_changes(host: Host, models: tuple) -> None:
    Order, _ = models
    o = await Order.create(items=[{}], total=2.0)

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        items: list[dict] = Field(min_length=1)
        total: float = 0.0
        priority: int = 3

    host.publish(Order)
    again = await Order.find(o.id)
    assert again.priority == 3
    assert host.sql("SELECT priority FROM orders").rows == [(3,)]

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        items: list[dict] = Field(min_length=1)
        must: str

    with pytest.raises(DeployRefused, match="adds required field 'must'"):
        host.publish(Order)

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        items: list[dict] = Field(min_length=1)
        total: float = 0.0
        priority: str = "high"  # the stored 3 is not a str for pydantic: refused

    with pytest.raises(DeployRefused, match="changes field 'priority'"):
        host.publish(Order)

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        items: list[dict] = Field(min_length=1)
        total: float = 0.0
        priority: float = 1.0  # every stored int is a valid float: allowed, column altered

    host.publish(Order)
    assert host.sql("SELECT typeof(priority), priority FROM orders").rows == [("DOUBLE", 3.0)]

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        items: int = 0  # a list cannot become an int

    with pytest.raises(DeployRefused, match="changes field 'items'"):
        host.publish(Order)
    assert host.registry.get("Order").active == "1.0.2"


async def test_migrate_fills_a_new_required_field(host: Host, models: tuple) -> None:
    Order, _ = models
    o = await Order.create(items=[{}], total=2.0)

    class Order(Model, endpoint="orders"):  # type: ignore[no-redef]
        items: list[dict] = Field(min_length=1)
        total: float = 0.0
        label: str

        @classmethod
        def migrate(cls, record: dict) -> dict:
            return {**record, "label": f"order {record['total']}"}

    host.publish(Order)
    assert (await Order.find(o.id)).label == "order 2.0"


async def test_publish_source_text(host: Host) -> None:
    source = (
        "from microlib_kernel import Model\n"
        "class Pet(Model, endpoint='pets'):\n"
        "    name: str\n"
        "class Toy(Model):\n"
        "    pet_id: str\n"
    )
    published = host.publish(source, version="2.0.0")
    assert {(p.name, p.version, p.endpoint) for p in published} == {
        ("Pet", "2.0.0", "pets"),
        ("Toy", "2.0.0", "toys"),
    }
    Pet = host.model("pet")
    p = await Pet.create(name="rex")
    assert (await Pet.find(p.id)).name == "rex"
    with pytest.raises(DeployRefused, match="line 2: NameError"):
        host.publish("x = 1\nundefined_name\n")
    with pytest.raises(DeployRefused, match="defines no Model"):
        host.publish("x = 1\n")
    with pytest.raises(DeployRefused, match="line 1"):
        host.publish("def broken(:\n")
    assert host.registry.get("Pet").active == "2.0.0"


async def test_publish_adapter_service_module_sources(host: Host) -> None:
    host.publish(
        "def authorize(order):\n    return {'ok': True}\n", kind="adapter", name="payments"
    )
    assert host.adapters.get("payments.authorize")(None) == {"ok": True}
    host.publish("class Api:\n    pass\nApi()\n", kind="service", name="payments_api")
    assert type(host.services.get("payments_api")).__name__ == "Api"
    host.publish("def double(x):\n    return 2 * x\n", kind="module", name="helpers")
    host.publish(
        "from microlib_modules.helpers import double\n"
        "from microlib_kernel import Model\n"
        "class Twice(Model):\n    n: int = double(21)\n"
    )
    assert host.model("Twice").spec().fields["n"].default == 42
    with pytest.raises(DeployRefused, match="needs a name"):
        host.publish("def f(): pass", kind="adapter")


async def test_two_hosts_do_not_see_each_other(tmp_path: Path) -> None:
    a, b = Host("memory://"), Host("memory://")
    try:
        OrderA, _ = make_models()
        OrderB, _ = make_models()
        a.publish(OrderA)
        b.publish(OrderB)
        await OrderA.create(items=[{}])
        assert await OrderA.count() == 1 and await OrderB.count() == 0
        with pytest.raises(DeployRefused, match="another host"):
            b.publish(OrderA)
    finally:
        a.close()
        b.close()


async def test_calls_from_other_threads_and_loops(host: Host, models: tuple) -> None:
    Order, _ = models
    results = []

    def in_thread() -> None:
        results.append(asyncio.run(Order.create(items=[{}])).id)

    threads = [threading.Thread(target=in_thread) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and await Order.count() == 4


async def test_closed_host_says_so(tmp_path: Path) -> None:
    h = Host("memory://")
    Order, _ = make_models()
    h.publish(Order)
    h.close()
    h.close()  # idempotent
    from microlib_kernel import ServiceUnavailable

    with pytest.raises(ServiceUnavailable, match="closed"):
        await Order.create(items=[{}])


async def test_create_many_is_all_or_nothing(host: Host, models: tuple) -> None:
    Order, _ = models
    made = await Order.create_many([{"items": [{}], "total": float(i)} for i in range(500)])
    assert len(made) == 500 and await Order.count() == 500
    with pytest.raises(ValidationFailed):
        await Order.create_many([{"items": [{}]}, {"items": []}])
    assert await Order.count() == 500


async def test_create_many_publishes_caches_and_notifies_each_row(
    host: Host, models: tuple
) -> None:
    Order, _ = models
    changes: list[tuple[str, int]] = []
    host.on_change(lambda c: changes.append((c.id, (c.record or {}).get("revision", 0))))
    made = await Order.create_many([{"items": [{}], "total": float(i)} for i in range(1200)])
    created = host.events.recent("order.created", n=0)  # the ring keeps the last 1,000
    assert [e.model_id for e in created] == [i.id for i in made[-1000:]]
    assert created[0].data["total"] == 200.0 and created[0].time == made[0].created_at
    assert changes == [(i.id, 1) for i in made]
    assert all(host.cache.get(host.repository("orders").table, i.id) is i for i in made[-10:])
    assert len({i.id for i in made}) == 1200


async def test_concurrent_creates_fail_alone(host: Host, models: tuple) -> None:
    Order, _ = models
    results = await asyncio.gather(
        *[Order.create(items=[{}] if i % 3 else [], total=float(i)) for i in range(30)],
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, ValidationFailed)]
    assert len(failed) == 10
    assert await Order.count() == 20


def test_deploy_token_file_and_log(tmp_path: Path) -> None:
    import stat

    h = Host("memory://")
    try:
        token = h.deploy_token
        path = tmp_path / ".microlib" / "deploy-token"
        assert path.read_text().strip() == token and len(token) >= 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        other = Host("memory://")
        assert other.deploy_token == token  # the file is reused
        other.close()
        Order, _ = make_models()
        h.publish(Order)
        h.publish("def f(x):\n    return x\n", kind="adapter", name="util")
        log = [d.to_json() for d in h.deployments]
        assert [(d["kind"], d["names"], d["versions"]) for d in log] == [
            ("model", ["Order"], ["1.0.0"]),
            ("adapter", ["util"], [None]),
        ]
    finally:
        h.close()


async def test_async_hooks_and_missing_required_fields(host: Host) -> None:
    class Ticket(Model, endpoint="tickets"):
        title: str
        state: str = "open"

        async def on_update(self, changes: dict) -> dict:
            await asyncio.sleep(0)
            if changes.get("state") == "closed" and self.state == "open":
                changes["title"] = self.title + " (closed)"
            return changes

        async def on_delete(self) -> None:
            await asyncio.sleep(0)
            if self.state != "closed":
                raise ValueError("close it first")

    host.publish(Ticket)
    with pytest.raises(ValidationFailed) as info:
        await Ticket.create()
    assert info.value.errors[0]["loc"] == ["title"] and info.value.errors[0]["type"] == "missing"
    with pytest.raises(ValidationFailed, match="title"):
        await Ticket.create(title=["not", "a", "string"])
    t = await Ticket.create(title="leak")
    with pytest.raises(Vetoed, match="close it first"):
        await t.delete()
    t = await t.update(state="closed")
    assert t.title == "leak (closed)"
    await t.delete()
    assert await Ticket.count() == 0


def test_adapter_sources_bind_only_their_own_functions(tmp_path: Path) -> None:
    h = Host("memory://")
    try:
        h.publish(
            "from json import dumps\n\ndef authorize(order):\n    return None\n",
            kind="adapter",
            name="payments",
        )
        assert list(h.adapters) == ["payments.authorize"]
    finally:
        h.close()


def test_close_works_from_atexit_like_shutdown(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import atexit\n"
        "from microlib_kernel import Host\n"
        "h = Host('duckdb:///x.duckdb')\n"
        "atexit.register(h.close)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, timeout=60)
    assert (tmp_path / "x.duckdb.lock").read_text() == ""  # released: the holder line is gone
    Host("duckdb:///x.duckdb").close()


def test_tune_gc_raises_the_collection_thresholds(tmp_path: Path) -> None:
    import gc

    from microlib_kernel.config import GC_THRESHOLDS, Settings

    before = gc.get_threshold()
    try:
        Host(settings=Settings.load(datasource="memory://", env={})).close()
        assert gc.get_threshold() == before  # off by default: the process is the user's
        Host(settings=Settings.load(datasource="memory://", env={"MICROLIB_TUNE_GC": "1"})).close()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
