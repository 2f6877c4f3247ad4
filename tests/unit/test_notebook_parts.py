"""Parts of the notebook experience that need no kernel, host or file."""

from __future__ import annotations

import datetime as dt
import socket
from typing import Any

import pytest
from IPython.core.error import UsageError

from microlib_kernel.domain.events import Event
from microlib_kernel.errors import MicrolibError
from microlib_kernel.notebook.bulk import rows_of
from microlib_kernel.notebook.cells import (
    bind_sql_parameters,
    sql_parameters,
    top_level_definitions,
)
from microlib_kernel.notebook.dashboard import render_feed, render_models
from microlib_kernel.notebook.displays import FieldInfo as Field
from microlib_kernel.notebook.displays import (
    Message,
    Progress,
    PublishedDisplay,
    PublishedModel,
    Table,
    annotation_text,
)
from microlib_kernel.notebook.kernelspec import kernel_json
from microlib_kernel.notebook.serving import ServeOutcome
from microlib_kernel.notebook.session import NotebookSession
from microlib_kernel.sql_result import SqlResult


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("SELECT * FROM orders WHERE total > $min AND status = $status", ["min", "status"]),
        ("SELECT $a, $a, $b_2", ["a", "b_2"]),
        ("SELECT '$not' || $yes", ["yes"]),
        ("SELECT 'it''s $not', $yes", ["yes"]),
        ('SELECT "$col" FROM t WHERE x = $v', ["v"]),
        ("SELECT 1 -- $comment\n, $after", ["after"]),
        ("SELECT /* $c */ $d", ["d"]),
        ("SELECT $$ $inside $$, $out", ["out"]),
        ("SELECT $tag$ $inside $tag$, $out", ["out"]),
        ("SELECT ?, $1, $2", []),
        ("SELECT 'unterminated $x", []),
    ],
)
def test_sql_parameters_outside_literals(query: str, names: list[str]) -> None:
    assert sql_parameters(query) == names


def test_sql_parameters_bind_values_not_text() -> None:
    ns = {"status": "x' OR 1=1 --", "n": 3}
    assert bind_sql_parameters("SELECT $status, $n", ns) == ns
    assert bind_sql_parameters("SELECT 1", ns) is None
    with pytest.raises(UsageError, match=r"\$missing is not defined"):
        bind_sql_parameters("SELECT $missing", ns)


def test_top_level_definitions_ignore_imports_and_nested_names() -> None:
    source = """
import os
from json import dumps as d
def f():
    inner = 1
async def g(): pass
class C: pass
x = y = 1
a, (b, c) = 1, (2, 3)
z: int = 3
w += 1
if True:
    hidden = 1
"""
    assert top_level_definitions(source) == {"f", "g", "C", "x", "y", "a", "b", "c", "z", "w"}
    assert top_level_definitions("def (") == set()


def test_table_and_message_render_html_and_text() -> None:
    t = Table(
        "models", ["model", "endpoint"], [["Order", ("/orders", "http://h/orders")]], "a note"
    )
    assert '<a href="http://h/orders" target="_blank">/orders</a>' in t._repr_html_()
    assert repr(t).splitlines() == [
        "models",
        "model  endpoint",
        "Order  /orders <http://h/orders>",
        "a note",
    ]
    evil = Table("", ["x"], [["<script>"]])._repr_html_()
    assert "<script>" not in evil and "&lt;script&gt;" in evil
    m = Message("serving at http://h", {"http://h": "http://h"})
    assert repr(m) == "serving at http://h"
    assert '<a href="http://h"' in m._repr_html_()


def test_published_display() -> None:
    model = PublishedModel(
        "Order",
        "1.0.1",
        "orders",
        "http://127.0.0.1:8707/microlib/api/models/orders",
        [Field("items", "list[dict]", True, ""), Field("total", "float", False, "0.0")],
        commands=["approve"],
    )
    shown = PublishedDisplay([model], "http://127.0.0.1:8707/microlib/api/openapi.json")
    html = shown._repr_html_()
    assert "<b>Order</b> 1.0.1" in html
    assert 'href="http://127.0.0.1:8707/microlib/api/models/orders"' in html
    assert "openapi.json" in html and "approve" in html and "required" in html
    assert repr(shown).splitlines() == [
        "published Order 1.0.1 at http://127.0.0.1:8707/microlib/api/models/orders",
        "  items: list[dict]",
        "  total: float = 0.0",
    ]
    offline = PublishedDisplay([PublishedModel("Order", "1.0.0", "orders", None, [])], None, "x")
    assert "published Order 1.0.0 at /orders" in repr(offline) and "<a" not in offline._repr_html_()


def test_annotation_text() -> None:
    from typing import Literal

    assert annotation_text(float) == "float"
    assert annotation_text(list[dict]) == "list[dict]"
    assert annotation_text(str | None) == "str | None"
    assert annotation_text(Literal["A", "B"]) == "Literal['A', 'B']"


def test_progress_in_text(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress(4, "loading orders", widget=False) as p:
        p.update(2)
        p.update(5)  # never past the total
    out = capsys.readouterr().out
    assert out.startswith("\rloading orders [------------------------------] 0/4")
    assert "[##############################] 4/4" in out and out.endswith("\n")
    with pytest.raises(RuntimeError), Progress(2, "failing", widget=False):
        raise RuntimeError("x")
    assert capsys.readouterr().out.endswith("(failed)\n")


def test_progress_as_a_widget() -> None:
    p = Progress(10, "loading", widget=True)
    p.update(3)
    assert p._bar.value == 3 and p._bar.max == 10
    p.close(failed=True)
    assert p._bar.bar_style == "danger" and "failed" in p._text.value
    import ipywidgets

    ipywidgets.Widget.close_all()  # with their layouts and styles: none left for shutdown


def test_rows_of() -> None:
    assert rows_of([{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    assert rows_of(SqlResult(["a"], [(1,), (2,)])) == [{"a": 1}, {"a": 2}]
    assert rows_of(iter([{"a": 1}])) == [{"a": 1}]
    with pytest.raises(UsageError, match="cannot load a dict"):
        rows_of({"a": 1})
    with pytest.raises(UsageError, match=r"row 1 is not a dict \(int\)"):
        rows_of([{"a": 1}, 2])


def test_dashboard_rendering() -> None:
    models = [
        {
            "name": "Order",
            "endpoint": "orders",
            "active": "1.0.1",
            "versions": ["1.0.0", "1.0.1"],
            "routes": {"1.0.0": 90.0, "1.0.1": 10.0},
            "count": 12,
        }
    ]
    html = render_models(models, "http://h/api")
    assert "1.0.0=90, 1.0.1=10" in html and ">12<" in html
    assert '<a href="http://h/api/models/orders"' in html
    assert "no model" in render_models([], None)
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    feed = render_feed([Event("order.created", model_id="a", time=t), Event("x.y", time=t)])
    assert feed.index("x.y") < feed.index("order.created")  # newest first
    assert "03:04:05.678" in feed and "no events" in render_feed([])


def test_kernel_json_loads_the_extension() -> None:
    spec = kernel_json("/py")
    assert spec["argv"] == [
        "/py",
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
        "--ext=microlib_kernel",
    ]
    assert spec["display_name"] == "MicroLib (Python 3)" and spec["language"] == "python"


# -- serving: the port fallback, against an in-memory host ---------------------------------


class FakeHost:
    """Just what ``NotebookSession.serve`` (``HostServing``) uses of a host."""

    def __init__(self, port: int, serve: bool = True, busy_on_bind: set[int] | None = None):
        from microlib_kernel.config import Settings

        self.settings = Settings(port=port, serve=serve)
        self.url: str | None = None
        self.calls: list[tuple[int, str]] = []
        self.busy_on_bind = busy_on_bind or set()

    def serve(self, port: int, bind: str) -> str:
        self.calls.append((port, bind))
        if port in self.busy_on_bind:
            raise MicrolibError(f"port {port} is busy")
        self.url = f"http://{bind}:{port or 5555}"
        return self.url


def session_with(host: FakeHost) -> NotebookSession:
    return NotebookSession(host)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_first_publish_skips_a_busy_port_and_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = FakeHost(port)
        outcome = session_with(host).serving.serve_after_publish()
    assert outcome is not None
    # Ports after it may be taken too on a shared machine: they are skipped the same way.
    assert outcome.busy[0] == port and outcome.busy == list(range(port, port + len(outcome.busy)))
    assert host.calls == [(port + len(outcome.busy), "127.0.0.1")]
    assert outcome.url == host.url
    assert outcome.message().endswith(f"busy: serving at {host.url} instead")
    assert outcome.message().startswith(f"port {port} " if len(outcome.busy) == 1 else "ports ")


def test_serve_is_idempotent_and_an_explicit_port_is_not_replaced() -> None:
    port = free_port()
    host = FakeHost(port, busy_on_bind={port})
    session = session_with(host)
    with pytest.raises(MicrolibError, match="busy"):
        session.serve(port=port)
    assert host.calls == [(port, "127.0.0.1")]
    outcome = session.serve(port=0)
    assert outcome.message() == "serving at http://127.0.0.1:5555"
    assert session.serve().message() == "already serving at http://127.0.0.1:5555"
    with pytest.raises(MicrolibError, match="stop first"):
        session.serve(port=port)


def test_serving_can_be_turned_off() -> None:
    host = FakeHost(free_port(), serve=False)
    assert session_with(host).serving.serve_after_publish() is None and host.calls == []


def test_serve_outcome_messages() -> None:
    assert ServeOutcome("http://x:1").message() == "serving at http://x:1"
    assert ServeOutcome("http://x:1", started=False).message() == "already serving at http://x:1"


def test_banner(monkeypatch: pytest.MonkeyPatch) -> None:
    class Store:
        def describe(self) -> str:
            return "duckdb: /x.duckdb"

    host: Any = FakeHost(8707)
    host.datasource = Store()
    host.api_url = None
    line = session_with(host).banner()
    assert line == (
        "microlib: duckdb: /x.duckdb · API starts on the first publish (127.0.0.1, port 8707)"
        " · %microlib help"
    )
