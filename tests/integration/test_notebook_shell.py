"""The ``%microlib`` magics in an IPython shell, on a real DuckDB file.

These run the magics exactly as a notebook does (``run_cell``), without a kernel
process; ``test_notebook_kernel.py`` covers the same paths in real kernels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microlib_kernel import Host
from microlib_kernel.notebook.extension import session_of
from tests.notebook_support import fresh_shell

ORDER = """%%microlib model
from pydantic import Field
from microlib_kernel import Model

class Order(Model, endpoint="orders"):
    items: list[dict] = Field(min_length=1)
    total: float = 0.0
    status: str = "PENDING"
"""


@pytest.fixture
def ip() -> Iterator[Any]:
    with fresh_shell() as shell:
        yield shell


def host_of(ip: Any) -> Host:
    session = session_of(ip)
    assert session is not None
    return session.host


def plain(text: str) -> str:
    """Text without ANSI colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def run(ip: Any, code: str) -> Any:
    return ip.run_cell(code, store_history=False)


def ok(ip: Any, code: str) -> Any:
    result = run(ip, code)
    assert result.success, result.error_before_exec or result.error_in_exec
    return result


def usage_error(ip: Any, code: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must fail with exactly a one-line UsageError; return its text."""
    from IPython.core.error import UsageError

    capsys.readouterr()
    result = run(ip, code)
    assert type(result.error_in_exec) is UsageError, result.error_in_exec
    err = capsys.readouterr().err
    assert err.count("UsageError") == 1 and "Traceback" not in err, err
    return str(result.error_in_exec)


def test_load_prints_one_line_and_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    with fresh_shell(load=False) as ip:
        from microlib_kernel.notebook.extension import load_ipython_extension

        ok(ip, "%load_ext microlib_kernel")
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1
        assert "microlib.duckdb" in out[0] and "%microlib help" in out[0]
        assert "MICROLIB_SERVE=0" in out[0]  # the test environment turns serving off
        host = host_of(ip)
        load_ipython_extension(ip)  # a second load changes nothing
        assert host_of(ip) is host
        assert capsys.readouterr().out == ""


def test_model_cell_publishes_and_republishes(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    ok(ip, ORDER)
    out = capsys.readouterr().out
    assert "published Order 1.0.0 at /orders" in out
    assert "items: list[dict]" in out and "total: float = 0.0" in out
    ok(ip, "o = await Order.create(items=[{'sku': 'a'}], total=2.5)")
    assert ip.user_ns["o"].version == "1.0.0"
    ok(ip, ORDER)
    assert "Order 1.0.1" in capsys.readouterr().out
    ok(ip, ORDER.replace("%%microlib model", "%%microlib model --version 2.0.0"))
    assert "Order 2.0.0" in capsys.readouterr().out
    entry = host_of(ip).registry.get("order")
    assert list(entry.versions) == ["1.0.0", "1.0.1", "2.0.0"] and entry.active == "2.0.0"
    ok(ip, "n = await Order.count()")
    assert ip.user_ns["n"] == 1  # the same table across versions


def test_a_raising_cell_publishes_nothing_and_the_old_version_keeps_serving(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(ip, ORDER)
    serving = ip.user_ns["Order"]
    broken = ORDER + "\nclass Customer(Model, endpoint='customers'):\n    name: str\n\n1 / 0\n"
    capsys.readouterr()
    result = run(ip, broken)
    err = capsys.readouterr()
    assert "ZeroDivisionError" in err.out + err.err  # the user's traceback, as usual
    assert (
        str(result.error_in_exec)
        == "nothing published: the cell raised ZeroDivisionError; Order 1.0.0 keeps serving"
    )
    host = host_of(ip)
    assert host.registry.get("Order").active == "1.0.0"
    assert host.registry.find("Customer") is None
    assert ip.user_ns["Order"] is serving  # the name still means the serving class
    assert "Customer" not in ip.user_ns
    ok(ip, "o = await Order.create(items=[{}])")  # the next cell runs normally
    assert ip.user_ns["o"].version == "1.0.0"


def test_an_invalid_spec_publishes_nothing(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ok(ip, ORDER)
    result = run(ip, ORDER.replace("status: str", "update: str"))
    assert isinstance(result.error_in_exec, Exception)
    assert "nothing published" in str(result.error_in_exec)
    assert host_of(ip).registry.get("Order").active == "1.0.0"


def test_a_refused_publish_is_one_line_and_publishes_nothing(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(ip, ORDER)
    ok(ip, "await Order.create(items=[{}])")
    cell = ORDER + "    owner: str\n"  # a required field while rows exist
    message = usage_error(ip, cell, capsys)
    assert message.startswith("nothing published: Order 1.0.1 adds required field 'owner'")
    assert message.endswith("Order 1.0.0 keeps serving")
    assert host_of(ip).registry.get("Order").active == "1.0.0"


def test_models_of_one_cell_are_published_together_or_not_at_all(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(ip, ORDER)
    cell = """%%microlib model
class Customer(Model, endpoint="customers"):
    name: str

class Thief(Model, endpoint="orders"):
    name: str
"""
    message = usage_error(ip, cell, capsys)
    assert "endpoint 'orders' is served by Order" in message
    assert host_of(ip).registry.find("Customer") is None
    ok(ip, cell.replace('endpoint="orders"', 'endpoint="suppliers"'))
    assert {e.name for e in host_of(ip).registry.entries()} == {"Order", "Customer", "Thief"}


def test_only_classes_the_cell_defines_are_published(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(ip, ORDER)
    message = usage_error(ip, "%%microlib model\nAlias = Order\nx = 1\n", capsys)
    assert message == "the cell defines no Model subclass; nothing published"
    cell = (
        "%%microlib model\n"
        "from tests.models import make_models\n"
        "Theirs, _ = make_models()\n"  # defined in another module: not this cell's
        "class _Base(Model, endpoint='bases'):\n"  # private: a shared base, not a model
        "    pass\n"
    )
    assert "defines no Model subclass" in usage_error(ip, cell, capsys)
    assert [e.name for e in host_of(ip).registry.entries()] == ["Order"]


def test_top_level_await_in_a_model_cell_is_a_usage_error(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    message = usage_error(ip, "%%microlib model\nimport asyncio\nawait asyncio.sleep(0)\n", capsys)
    assert "cannot use top-level await" in message


def test_adapter_cell_binds_its_functions(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cell = """%%microlib adapter payments
from json import dumps

class Receipt:
    pass

def _helper():
    return 1

async def authorize(order, *, payments_api):
    return {"payment_id": await payments_api.charge(order.total)}

def cancel(order):
    return {"payment_id": None}

refund = lambda order: None
"""
    capsys.readouterr()
    ok(ip, cell)
    assert "payments.authorize, payments.cancel, payments.refund" in capsys.readouterr().out
    adapters = host_of(ip).adapters
    assert list(adapters) == ["payments.authorize", "payments.cancel", "payments.refund"]
    assert adapters.get("payments.cancel") is ip.user_ns["cancel"]  # visible in the notebook
    ok(ip, cell.replace('"payment_id": None', '"payment_id": "void"'))
    assert adapters.get("payments.cancel")(None) == {"payment_id": "void"}  # rebound
    assert "raised NameError" in usage_error(
        ip, "%%microlib adapter payments\ndef cancel(o):\n    pass\nnope\n", capsys
    )
    assert adapters.get("payments.cancel")(None) == {"payment_id": "void"}  # unchanged
    assert "Python identifiers" in usage_error(ip, "%%microlib adapter pay-ments\nx=1\n", capsys)
    assert "defines no function" in usage_error(ip, "%%microlib adapter p\nx = 1\n", capsys)


def test_service_cell_registers_its_object(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ok(ip, "%%microlib service payments_api\nclass Api:\n    rate = 2\nApi()\n")
    services = host_of(ip).services
    assert services.get("payments_api").rate == 2
    assert ip.user_ns["payments_api"] is services.get("payments_api")
    ok(ip, "%%microlib service clock\nimport time\nclock = time.monotonic\n")
    assert services.get("clock") is ip.user_ns["time"].monotonic
    message = usage_error(ip, "%%microlib service other\nx = 1\n", capsys)
    assert "end it with an expression" in message and "other" not in list(services)


def test_module_cell_is_importable(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ok(ip, "%%microlib module pricing\nRATE = 0.2\ndef tax(x):\n    return x * RATE\n")
    ok(ip, "from microlib_modules.pricing import tax\nt = tax(10)")
    assert ip.user_ns["t"] == 2.0 and ip.user_ns["pricing"].RATE == 0.2
    capsys.readouterr()
    result = run(ip, "%%microlib module pricing\nRATE = 0.3\nboom()\n")
    shown = plain(capsys.readouterr().out)
    assert "----> 2 boom()" in shown and "NameError: name 'boom' is not defined" in shown
    assert "run_module" not in shown  # the user's frames only
    assert str(result.error_in_exec) == (
        "module pricing not installed: the cell raised NameError; "
        "the earlier version stays importable"
    )
    ok(ip, "import microlib_modules.pricing as p\nrate = p.RATE")
    assert ip.user_ns["rate"] == 0.2  # the earlier module stays


def test_sql_cell_binds_variables_as_parameters(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(ip, ORDER)
    ok(ip, "for t in (1.0, 2.0, 2.0):\n    await Order.create(items=[{}], total=t)")
    ok(ip, 'wanted = 2.0\nname = "x\' OR 1=1 --"')
    result = ok(
        ip,
        "%%microlib sql -o res\n"
        "SELECT count(*) AS n, '$name' AS literal FROM orders -- $nothing\n"
        "WHERE total = $wanted AND status <> $name",
    )
    res = ip.user_ns["res"]
    assert result.result is res
    assert res.rows == [(2, "$name")]
    assert "1 row(s)" in repr(res) and "<table" in res._repr_html_()
    assert "$missing is not defined" in usage_error(ip, "%%microlib sql\nSELECT $missing", capsys)
    assert "only read-only queries" in usage_error(ip, "%%microlib sql\nDELETE FROM orders", capsys)
    assert "holds no query" in usage_error(ip, "%%microlib sql\n  \n", capsys)


def test_line_magics(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ok(ip, ORDER)
    ok(ip, "o = await Order.create(items=[{}])")
    ok(ip, ORDER)
    status = repr(ok(ip, "%microlib status").result)
    assert "microlib.duckdb" in status and "not serving" in status
    assert "Order  1.0.1    1      /orders" in status
    models = repr(ok(ip, "%microlib models").result)
    assert "1.0.0, 1.0.1" in models and "1.0.1=100" in models
    assert repr(ok(ip, "%microlib rollback order").result) == "Order 1.0.0 is active"
    routed = repr(ok(ip, "%microlib route Order 1.0.0=90 1.0.1=10").result)
    assert routed == "Order routes: 1.0.0=90, 1.0.1=10"
    assert "1.0.9" in usage_error(ip, "%microlib route Order 1.0.9=1", capsys)
    assert "look like 1.0.1=10" in usage_error(ip, "%microlib route Order 1.0.0", capsys)
    events = repr(ok(ip, "%microlib events order.* -n 5").result)
    assert "order.created" in events and o_id(ip) in events
    assert "no events" in repr(ok(ip, "%microlib events nothing.*").result)
    gone = repr(ok(ip, "%microlib unpublish ORDER").result)
    assert gone == "Order unpublished: /orders answers 404; its data stays"
    assert host_of(ip).registry.entries() == []
    assert ok(ip, "%microlib stop").result.text == "not serving"


def o_id(ip: Any) -> str:
    return str(ip.user_ns["o"].id)


def test_usage_errors_are_one_line(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert "unknown subcommand 'nope'" in usage_error(ip, "%microlib nope", capsys)
    assert "is a cell magic" in usage_error(ip, "%microlib model", capsys)
    assert "takes no cell" in usage_error(ip, "%%microlib status\nx", capsys)
    assert "no model named 'Ghost'" in usage_error(ip, "%microlib rollback Ghost", capsys)
    assert "unrecognized arguments" in usage_error(ip, "%microlib status --loud", capsys)
    assert "-n must be at least 1" in usage_error(ip, "%microlib events -n 0", capsys)


def test_help_is_derived_from_the_subcommands(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from microlib_kernel.notebook.magics import SUBCOMMANDS

    capsys.readouterr()
    ok(ip, "%microlib help")
    text = capsys.readouterr().out
    for name, sub in SUBCOMMANDS.items():
        prefix = "%%microlib" if sub.cell else "%microlib"
        assert f"{prefix} {name}" in text and sub.summary in text
    ok(ip, "%microlib route -h")
    assert "VERSION=WEIGHT" in capsys.readouterr().out
    doc = ip.find_line_magic("microlib").__doc__
    assert "%%microlib sql [-o VAR]" in doc and "%microlib rollback MODEL [VERSION]" in doc


def test_load_creates_in_batches_with_a_progress_bar(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(ip, ORDER)
    ok(ip, "rows = [{'items': [{'n': i}], 'total': float(i)} for i in range(25)]")
    capsys.readouterr()
    result = ok(ip, "%microlib load order rows --batch 10")
    assert repr(result.result) == "loaded 25 Order instance(s)"
    progress = capsys.readouterr().out
    assert "loading Order [" in progress and "25/25" in progress
    ok(ip, "bad = [{'items': [{}]}] * 10 + [{'items': []}]")
    message = usage_error(ip, "%microlib load Order bad --batch 10", capsys)
    assert message.startswith("rows 10-10 refused") and "10 row(s) loaded before them" in message
    ok(ip, "n = await Order.count()")
    assert ip.user_ns["n"] == 35
    ok(ip, "pairs = [{'items': [{}]}, (1, 2)]")
    message = usage_error(ip, "%microlib load Order pairs", capsys)
    assert message == "row 1 is not a dict (tuple)"
    assert "o2 is not defined" in usage_error(ip, "%microlib load Order o2", capsys)


def test_unload_closes_the_host_and_reload_reopens_the_same_datasource(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_shell() as ip:
        ok(ip, ORDER)
        ok(ip, "o = await Order.create(items=[{}])")
        first = host_of(ip)
        db = Path(first.settings.cwd) / ".microlib" / "microlib.duckdb"
        ok(ip, "%reload_ext microlib_kernel")
        second = host_of(ip)
        assert first.closed and second is not first and not second.closed
        assert not first.loop.thread.is_alive()
        assert second.datasource.describe() == first.datasource.describe() == f"duckdb: {db}"
        ok(ip, ORDER)  # the classes were bound to the closed host: define them again
        ok(ip, "found = await Order.find(o.id)")
        assert ip.user_ns["found"].id == ip.user_ns["o"].id  # the data is still there
        ok(ip, "%unload_ext microlib_kernel")
        assert second.closed and ip.find_line_magic("microlib") is None
        assert ip.find_cell_magic("microlib") is None
    Host(f"duckdb:///{db}").close()  # nobody holds the file any more


def test_ports_show_in_diagram_and_status(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cell = ORDER.replace(
        "from microlib_kernel import Model", "from microlib_kernel import Model, port"
    )
    cell += (
        '    pay = port("payments.authorize", consumes="order.approved", produces="order.paid",'
        ' undo="payments.cancel")\n'
    )
    ok(ip, cell)
    svg = ok(ip, "%microlib diagram order").result
    assert svg.data.startswith("<svg") and "payments.authorize" in svg.data
    assert "order.paid" in svg.data and "payments.cancel" in svg.data
    assert "no model named 'Nope'" in usage_error(ip, "%microlib diagram Nope", capsys)
    status = repr(ok(ip, "%microlib status").result)
    assert "ports\nmodel  port  adapter" in status
    assert "adapter payments.authorize is not registered" in status
    ok(ip, "%%microlib adapter payments\ndef authorize(o):\n    pass\ndef cancel(o):\n    pass\n")
    assert "Order  pay   payments.authorize  ok" in repr(ok(ip, "%microlib status").result)
