"""Rich displays of the magics: HTML for notebooks, plain text everywhere else.

Every display is a small object with ``_repr_html_`` and a plain ``__repr__``, built
from data the magic gathered (nothing here talks to the host), so the same object
prints in a terminal, renders in JupyterLab and is stored by papermill.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: A table cell: text, or ``(text, href)`` for a link.
Cell = str | tuple[str, str | None]

_STYLE = "border-collapse:collapse;margin:0.3em 0"


def _cell_text(cell: Cell) -> str:
    return cell[0] if isinstance(cell, tuple) else cell


def _cell_html(cell: Cell) -> str:
    if isinstance(cell, tuple):
        text, href = cell
        if href:
            return f'<a href="{html.escape(href)}" target="_blank">{html.escape(text)}</a>'
        return html.escape(text)
    return html.escape(cell)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """An HTML table; cells that are ``(text, href)`` become links."""
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{_cell_html(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table style='{_STYLE}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """The same table as aligned plain text (links show their URL)."""

    def plain(c: Cell) -> str:
        if isinstance(c, tuple) and c[1] and c[1] != c[0]:
            return f"{c[0]} <{c[1]}>"
        return _cell_text(c)

    body = [[plain(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    return "\n".join(lines)


@dataclass
class Table:
    """A titled table with an optional note under it."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    note: str = ""

    def _repr_html_(self) -> str:
        title = f"<b>{html.escape(self.title)}</b>" if self.title else ""
        note = f"<div><small>{html.escape(self.note)}</small></div>" if self.note else ""
        table = html_table(self.headers, self.rows) if self.rows else ""
        return f"<div class='microlib'>{title}{table}{note}</div>"

    def __repr__(self) -> str:
        parts = [self.title] if self.title else []
        if self.rows:
            parts.append(text_table(self.headers, self.rows))
        if self.note:
            parts.append(self.note)
        return "\n".join(parts)


@dataclass
class Report:
    """Several tables shown together (``%microlib status``)."""

    parts: list[Table]

    def _repr_html_(self) -> str:
        return "".join(p._repr_html_() for p in self.parts)

    def __repr__(self) -> str:
        return "\n\n".join(repr(p) for p in self.parts)


@dataclass
class Message:
    """One line of text (with links in HTML)."""

    text: str
    links: dict[str, str] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        out = html.escape(self.text)
        for label, href in self.links.items():
            out = out.replace(html.escape(label), _cell_html((label, href)), 1)
        return f"<div class='microlib'>{out}</div>"

    def __repr__(self) -> str:
        return self.text


@dataclass
class FieldInfo:
    name: str
    type: str
    required: bool
    default: str


@dataclass
class PublishedModel:
    """One published model as the model cell shows it."""

    name: str
    version: str
    endpoint: str
    url: str | None
    fields: list[FieldInfo]
    commands: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)


@dataclass
class PublishedDisplay:
    """What a ``%%microlib model`` cell published: name, version, endpoint links, fields."""

    models: list[PublishedModel]
    docs_url: str | None = None
    note: str = ""

    def _repr_html_(self) -> str:
        parts = []
        for m in self.models:
            link = _cell_html((m.url, m.url)) if m.url else f"/{html.escape(m.endpoint)}"
            fields = html_table(
                ["field", "type", "default"],
                [[f.name, f.type, "required" if f.required else f.default] for f in m.fields],
            )
            extra = "".join(
                f"<div><small>{label}: {html.escape(', '.join(items))}</small></div>"
                for label, items in (("commands", m.commands), ("ports", m.ports))
                if items
            )
            parts.append(
                f"<div><b>{html.escape(m.name)}</b> {html.escape(m.version)} → {link}"
                f"<details{' open' if len(m.fields) <= 8 else ''}>"
                f"<summary><small>{len(m.fields)} field(s)</small></summary>{fields}"
                f"</details>{extra}</div>"
            )
        if self.docs_url:
            parts.append(f"<div><small>{_cell_html(('OpenAPI', self.docs_url))}</small></div>")
        if self.note:
            parts.append(f"<div><small>{html.escape(self.note)}</small></div>")
        return f"<div class='microlib'>{''.join(parts)}</div>"

    def __repr__(self) -> str:
        lines = []
        for m in self.models:
            lines.append(f"published {m.name} {m.version} at {m.url or '/' + m.endpoint}")
            for f in m.fields:
                lines.append(f"  {f.name}: {f.type}" + ("" if f.required else f" = {f.default}"))
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


class Progress:
    """A progress bar for long work: an ipywidgets bar in a kernel, text otherwise.

    Args:
        total: how many steps the work has.
        label: what is being done (``"loading orders"``).
        widget: force the widget (True) or text (False) form; default: a widget when
            running in a kernel (a frontend may draw it).
    """

    def __init__(self, total: int, label: str, *, widget: bool | None = None) -> None:
        self.total = max(0, total)
        self.label = label
        self.done = 0
        self._started = time.perf_counter()
        self._last_text = 0.0
        self._bar: Any = None
        if widget is None:
            widget = _in_kernel()
        if widget:
            self._open_widget()
        else:
            self._write(force=True)

    def _open_widget(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        self._bar = widgets.IntProgress(
            value=0, min=0, max=max(self.total, 1), description=self.label[:30]
        )
        self._text = widgets.Label(self._status())
        self._box = widgets.HBox([self._bar, self._text])
        display(self._box)

    def _status(self) -> str:
        return f"{self.done}/{self.total} in {time.perf_counter() - self._started:.1f} s"

    def _write(self, *, force: bool = False, end: str = "") -> None:
        now = time.perf_counter()
        if not force and now - self._last_text < 0.2:
            return
        self._last_text = now
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        sys.stdout.write(f"\r{self.label} [{bar}] {self._status()}{end}")
        sys.stdout.flush()

    def update(self, steps: int = 1) -> None:
        """Advance by ``steps``."""
        self.done = min(self.total, self.done + steps)
        if self._bar is not None:
            self._bar.value = self.done
            self._text.value = self._status()
        else:
            self._write()

    def close(self, *, failed: bool = False) -> None:
        """Finish the bar (red when ``failed``)."""
        if self._bar is not None:
            self._bar.bar_style = "danger" if failed else "success"
            self._text.value = self._status() + (" (failed)" if failed else "")
        else:
            self._write(force=True, end=" (failed)\n" if failed else "\n")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(failed=exc_type is not None)


def _in_kernel() -> bool:
    """Whether the current IPython shell runs in a Jupyter kernel (a frontend exists)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def annotation_text(annotation: Any) -> str:
    """``list[dict]``, ``Literal['A', 'B']``, ``str | None``: a type as users wrote it."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    text = repr(annotation)
    for prefix in ("typing.", "typing_extensions.", "pydantic.types."):
        text = text.replace(prefix, "")
    return text


def published_models(
    published: Sequence[Any], classes: Sequence[type[Any]], urls: dict[str, str | None]
) -> list[PublishedModel]:
    """:class:`PublishedModel` rows for ``host.publish`` results and their classes.

    Args:
        published: ``Published`` items (``name``, ``version``, ``endpoint``).
        classes: the classes published, to read their fields and declarations.
        urls: endpoint -> URL of its collection (``None`` while not serving).
    """
    by_name = {c.__name__: c for c in classes}
    out = []
    for p in published:
        cls = by_name.get(p.name)
        spec = cls.spec() if cls is not None else None
        fields = []
        if cls is not None and spec is not None:
            for name, f in spec.fields.items():
                annotation = cls.model_fields[name].annotation
                default = "" if f.required else repr(f.default)
                fields.append(FieldInfo(name, annotation_text(annotation), f.required, default))
        out.append(
            PublishedModel(
                p.name,
                p.version,
                p.endpoint,
                urls.get(p.endpoint),
                fields,
                commands=sorted(spec.commands) if spec else [],
                ports=sorted(spec.ports) if spec else [],
            )
        )
    return out


def port_row(p: dict[str, Any]) -> list[Cell]:
    """A row of the ports table of ``%microlib status`` from a ``host.ports.report()`` item."""
    breaker = p.get("breaker") or {}
    state = "; ".join(p.get("problems") or []) or ("disabled" if p.get("disabled") else "ok")
    if breaker.get("state") not in (None, "closed"):
        state += f" (breaker {breaker['state']})"
    if p.get("last_error"):
        state += f"; last error: {p['last_error']}"
    return [p["model"], p["port"], p["adapter"], state]


def short(data: Any, width: int = 80) -> str:
    """``data`` as text, cut to ``width`` characters."""
    text = "" if data is None else str(data)
    return text if len(text) <= width else text[: width - 1] + "…"
