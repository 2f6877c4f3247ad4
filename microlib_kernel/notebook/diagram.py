"""The port flow of a model drawn as SVG, by code (no external service, no graphviz).

Events are pills, ports are boxes; an arrow goes from the event a port consumes to the
port, and from the port to the event it produces, so a flow reads left to right. Under
each port with an ``undo`` hangs its compensation (dashed, red), and dashed arrows
between undo boxes show the order a saga runs them in (the reverse of the flow).
Timeouts, retries, breakers and fallbacks are written on the port boxes.

.. code-block:: python

    from microlib_kernel.notebook.diagram import PortFlowDiagram
    PortFlowDiagram(Order)          # displays in a notebook (``_repr_svg_``)
    svg = port_flow_svg(Order.spec())
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ..domain.model import Model
from ..domain.ports import PortSpec
from ..domain.spec import ModelSpec

COL_W = 230  # column pitch
PORT_W = 200
EVENT_W = 180
EVENT_H = 30
LINE_H = 15
ROW_GAP = 22
MARGIN = 24
TOP = 56

_STYLE = """
.title{font:600 15px sans-serif;fill:#222}
.sub{font:11px sans-serif;fill:#666}
.port{fill:#eef4ff;stroke:#3b6fd8;stroke-width:1.4}
.port.disabled{fill:#f1f1f1;stroke:#999;stroke-dasharray:4 3}
.port.inbound{fill:#eefaf1;stroke:#2f9e58}
.event{fill:#fff8e6;stroke:#d49a1c;stroke-width:1.2}
.undo{fill:#fff0f0;stroke:#c94040;stroke-width:1.2;stroke-dasharray:5 3}
.name{font:600 13px sans-serif;fill:#1b2a4a}
.adapter{font:11px monospace;fill:#333}
.note{font:10.5px sans-serif;fill:#555}
.evtext{font:11.5px monospace;fill:#6b4a00}
.undotext{font:11px monospace;fill:#8a1f1f}
.edge{stroke:#555;stroke-width:1.3;fill:none}
.undoedge{stroke:#c94040;stroke-width:1.2;fill:none;stroke-dasharray:5 3}
"""


@dataclass
class _Node:
    kind: str  # "event" | "port" | "undo"
    key: str
    lines: list[tuple[str, str]]  # (css class, text)
    css: str
    rank: int = 0
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def mid_y(self) -> float:
        return self.y + self.h / 2


def _spec_of(obj: ModelSpec | type[Model]) -> ModelSpec:
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, type) and issubclass(obj, Model):
        return obj.spec()
    raise TypeError(f"port_flow_svg takes a Model class or a ModelSpec, got {obj!r}")


def _notes(spec: PortSpec) -> list[str]:
    notes = []
    timing = []
    if spec.type == "inbound":
        timing.append("inbound (HTTP)")
    if spec.timeout is not None:
        timing.append(f"timeout {spec.timeout:g}s")
    if spec.retries:
        timing.append(f"retries {spec.retries}")
    if timing:
        notes.append(" · ".join(timing))
    cb = spec.circuit_breaker
    if cb is not None:
        notes.append(f"breaker {cb.calls} calls/{cb.error_rate:g}%/{cb.window:g}s")
        notes.append(f"cooldown {cb.cooldown:g}s" + (f" → {cb.fallback}" if cb.fallback else ""))
    if spec.disabled:
        notes.append("disabled")
    return notes


def _matches(event: str, pattern: str | None) -> bool:
    return pattern is not None and fnmatch.fnmatchcase(event, pattern)


def _layout(spec: ModelSpec) -> tuple[list[_Node], list[tuple[_Node, _Node, str]]]:
    ports = spec.ports
    events: dict[str, _Node] = {}
    nodes: dict[str, _Node] = {}

    def event(name: str) -> _Node:
        if name not in events:
            events[name] = _Node("event", name, [("evtext", name)], "event")
        return events[name]

    edges: list[tuple[_Node, _Node, str]] = []
    for name, p in ports.items():
        css = "port" + (" disabled" if p.disabled else "")
        css += " inbound" if p.type == "inbound" else ""
        lines = [("name", name), ("adapter", p.adapter)] + [("note", n) for n in _notes(p)]
        nodes[name] = _Node("port", name, lines, css)
    for name, p in ports.items():
        if p.consumes:
            edges.append((event(p.consumes), nodes[name], "edge"))
        if p.produces:
            edges.append((nodes[name], event(p.produces), "edge"))
    # A produced event also reaches the ports whose consumes pattern matches it.
    for ev_name, ev in list(events.items()):
        for name, p in ports.items():
            if p.consumes and p.consumes != ev_name and _matches(ev_name, p.consumes):
                edges.append((ev, nodes[name], "edge"))

    # Ranks: longest path from the sources (bounded, so a cyclic flow still lays out).
    everything = list(nodes.values()) + list(events.values())
    for n in everything:
        n.rank = 0 if n.kind == "event" else 1
    for _ in range(len(everything) + 1):
        changed = False
        for src, dst, _css in edges:
            if dst.rank < src.rank + 1 <= 2 * len(everything):
                dst.rank = src.rank + 1
                changed = True
        if not changed:
            break

    # Undo boxes hang under their ports.
    undos: list[_Node] = []
    for name, p in ports.items():
        if p.undo:
            u = _Node("undo", f"undo:{name}", [("undotext", f"↩ {p.undo}")], "undo")
            u.rank = nodes[name].rank
            u.extra["port"] = name
            undos.append(u)
            edges.append((nodes[name], u, "undoedge"))
    # Saga order: undoing a port comes before undoing the port that triggered it.
    by_port = {u.extra["port"]: u for u in undos}
    for name, p in ports.items():
        if p.undo and p.consumes:
            for prev, q in ports.items():
                if prev != name and q.undo and q.produces and _matches(q.produces, p.consumes):
                    edges.append((by_port[name], by_port[prev], "saga"))

    # Coordinates: columns by rank, rows stacked per column.
    columns: dict[int, float] = {}
    main = [n for n in everything if n.kind != "undo"]
    for n in sorted(main, key=lambda n: (n.rank, n.kind != "event", n.key)):
        n.w = EVENT_W if n.kind == "event" else PORT_W
        n.h = EVENT_H if n.kind == "event" else LINE_H * len(n.lines) + 14
        n.x = MARGIN + n.rank * COL_W + (PORT_W - n.w) / 2
        n.y = columns.get(n.rank, TOP)
        columns[n.rank] = n.y + n.h + ROW_GAP
    band = max(columns.values(), default=TOP) + 18
    low: dict[int, float] = {}
    for u in undos:
        u.w, u.h = PORT_W - 20, EVENT_H
        u.x = MARGIN + u.rank * COL_W + 10
        u.y = low.get(u.rank, band)
        low[u.rank] = u.y + u.h + ROW_GAP
    return main + undos, edges


def _path(src: _Node, dst: _Node, css: str) -> str:
    if css == "undoedge":
        x1, y1 = src.x + src.w / 2, src.y + src.h
        x2, y2 = dst.x + dst.w / 2, dst.y
        if dst.y < src.y:  # same column, undo above: go round the side
            x1, y1, x2, y2 = src.x, src.mid_y, dst.x, dst.mid_y
        return f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}"
    if css == "saga":
        x1, y1 = src.x, src.mid_y
        x2, y2 = dst.right, dst.mid_y
        if src.rank == dst.rank:
            x1, y1, x2, y2 = src.x, src.mid_y, dst.x, dst.mid_y
            bend = min(x1, x2) - 20
            return f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        mid = (x1 + x2) / 2
        return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    x1, y1 = src.right, src.mid_y
    x2, y2 = dst.x, dst.mid_y
    if x2 <= x1:  # a backward edge (a cycle): loop over the top
        top = min(src.y, dst.y) - 18
        return (
            f"M{src.x + src.w / 2:.1f},{src.y:.1f} C{src.x + src.w / 2:.1f},{top:.1f} "
            f"{dst.x + dst.w / 2:.1f},{top:.1f} {dst.x + dst.w / 2:.1f},{dst.y:.1f}"
        )
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"


def _node_svg(n: _Node) -> list[str]:
    title = {"port": "port", "event": "event", "undo": "compensation"}[n.kind]
    radius = n.h / 2 if n.kind == "event" else 6
    out = [
        f'<g class="node {n.kind}-node" data-name={quoteattr(n.key)}>',
        f"<title>{escape(title)} {escape(n.key)}</title>",
        f'<rect class="{n.css}" x="{n.x:.1f}" y="{n.y:.1f}" width="{n.w:.1f}" '
        f'height="{n.h:.1f}" rx="{radius:.1f}"/>',
    ]
    if n.kind == "port":
        for i, (css, text) in enumerate(n.lines):
            y = n.y + 18 + i * LINE_H
            out.append(f'<text class="{css}" x="{n.x + 10:.1f}" y="{y:.1f}">{escape(text)}</text>')
    else:
        css, text = n.lines[0]
        out.append(
            f'<text class="{css}" x="{n.x + n.w / 2:.1f}" y="{n.mid_y + 4:.1f}" '
            f'text-anchor="middle">{escape(text)}</text>'
        )
    out.append("</g>")
    return out


def port_flow_svg(spec: ModelSpec | type[Model]) -> str:
    """The port flow of a model as a standalone SVG document (a string).

    Args:
        spec: a ``Model`` class or its ``ModelSpec``.
    """
    ms = _spec_of(spec)
    nodes, edges = _layout(ms)
    width = max((n.right for n in nodes), default=320) + MARGIN
    width = max(width, 360)
    height = max((n.y + n.h for n in nodes), default=TOP) + MARGIN + 14
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f"aria-label={quoteattr(f'{ms.name} port flow')}>",
        f"<style>{_STYLE}</style>",
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker>'
        '<marker id="undoarrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#c94040"/></marker>'
        "</defs>",
        f'<text class="title" x="{MARGIN}" y="24">{escape(ms.name)} — port flow</text>',
    ]
    if not ms.ports:
        parts.append(f'<text class="sub" x="{MARGIN}" y="44">{escape(ms.name)} has no ports</text>')
    else:
        parts.append(
            f'<text class="sub" x="{MARGIN}" y="42">events → ports → events; '
            "dashed red: compensation (saga runs right to left)</text>"
        )
    for src, dst, css in edges:
        cls = "edge" if css == "edge" else "undoedge"
        marker = "arrow" if css == "edge" else "undoarrow"
        label = f"{src.key} -> {dst.key}"
        parts.append(
            f'<path class="{cls}" data-edge={quoteattr(label)} d="{_path(src, dst, css)}" '
            f'marker-end="url(#{marker})"/>'
        )
    for n in nodes:
        parts.extend(_node_svg(n))
    parts.append("</svg>")
    return "\n".join(parts)


class PortFlowDiagram:
    """A model's port flow that displays itself in a notebook (``_repr_svg_``).

    Args:
        spec: a ``Model`` class or its ``ModelSpec``.
    """

    def __init__(self, spec: ModelSpec | type[Model]) -> None:
        self.spec = _spec_of(spec)
        self.svg = port_flow_svg(self.spec)

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str) -> None:
        """Write the SVG to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg)

    def __repr__(self) -> str:
        chain = []
        for name, p in self.spec.ports.items():
            step = f"{p.consumes or '(call)'} -> {name} -> {p.produces or '-'}"
            chain.append(step + (f" [undo {p.undo}]" if p.undo else ""))
        body = "; ".join(chain) or "no ports"
        return f"<PortFlowDiagram {self.spec.name}: {body}>"
