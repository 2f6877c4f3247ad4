"""The port flow diagram is well-formed SVG naming every port and event."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from microlib_kernel import Model, port
from microlib_kernel.notebook.diagram import PortFlowDiagram, port_flow_svg

SVG = "{http://www.w3.org/2000/svg}"


class Order(Model, endpoint="orders"):
    total: float = 0.0
    authorize_payment = port(
        "payments.authorize",
        consumes="order.approved",
        produces="payment.authorized",
        undo="payments.cancel",
        timeout=2.0,
        retries=2,
        circuit_breaker={"calls": 5, "error_rate": 50, "fallback": "payments.defer"},
    )
    pick = port(
        "inventory.pick",
        consumes="payment.authorized",
        produces="order.picked",
        undo="inventory.restock",
    )
    ship = port("shipping.ship", consumes="order.picked", produces="order.shipped")
    refund = port("payments.refund", type="inbound")
    legacy = port("legacy.sync", consumes="order.<&>", disabled=True)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_svg_is_well_formed_and_names_ports_events_and_undo() -> None:
    svg = port_flow_svg(Order)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    words = texts(root)
    for name in ("authorize_payment", "pick", "ship", "refund", "legacy"):
        assert name in words
    for event in ("order.approved", "payment.authorized", "order.picked", "order.shipped"):
        assert event in words
    assert "order.<&>" in words  # escaped in the document, intact once parsed
    assert "↩ payments.cancel" in words and "↩ inventory.restock" in words
    assert "timeout 2s · retries 2" in words
    assert "breaker 5 calls/50%/10s" in words
    assert any("payments.defer" in w for w in words)
    edges = {p.get("data-edge") for p in root.iter(f"{SVG}path") if p.get("data-edge")}
    assert "order.approved -> authorize_payment" in edges
    assert "authorize_payment -> payment.authorized" in edges
    assert "payment.authorized -> pick" in edges
    assert "authorize_payment -> undo:authorize_payment" in edges
    # Saga order: undoing pick comes before undoing authorize_payment.
    assert "undo:pick -> undo:authorize_payment" in edges
    assert float(root.get("width", "0")) > 0 and float(root.get("height", "0")) > 0


def test_layout_reads_left_to_right() -> None:
    root = ET.fromstring(port_flow_svg(Order.spec()))
    x = {}
    for group in root.iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        x[group.get("data-name")] = float(rect.get("x", "0"))
    assert x["order.approved"] < x["authorize_payment"] < x["payment.authorized"] < x["pick"]
    assert x["pick"] < x["order.picked"] < x["ship"] < x["order.shipped"]


def test_model_without_ports_and_cycles() -> None:
    class Plain(Model, endpoint="plains"):
        name: str = ""

    assert "Plain has no ports" in texts(ET.fromstring(port_flow_svg(Plain)))

    class Loop(Model, endpoint="loops"):
        ping = port("net.ping", consumes="pong", produces="ping")
        pong = port("net.pong", consumes="ping", produces="pong")

    root = ET.fromstring(port_flow_svg(Loop))
    assert {"ping", "pong"} <= set(texts(root))


def test_display_object() -> None:
    diagram = PortFlowDiagram(Order)
    assert diagram._repr_svg_().startswith("<svg")
    assert "order.approved -> authorize_payment -> payment.authorized" in repr(diagram)
    with pytest.raises(TypeError, match="Model class or a ModelSpec"):
        PortFlowDiagram("Order")  # type: ignore[arg-type]
