"""The ``%microlib`` subcommand registry: one dict, one small function per subcommand.

Each subcommand is registered with :func:`subcommand`; its arguments are declared with
IPython's ``magic_arguments``, and the help of ``%microlib?`` and ``%microlib help`` is
derived from the dict (:func:`help_text`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from .magics import MicrolibMagics

Run = Callable[["MicrolibMagics", argparse.Namespace, str | None], Any]


@dataclass(frozen=True)
class Subcommand:
    """One ``%microlib`` subcommand: its function, parser and whether it takes a cell."""

    name: str
    run: Run
    parser: argparse.ArgumentParser
    summary: str
    cell: bool

    @property
    def usage(self) -> str:
        return _clean(self.parser.format_usage())


def _clean(text: str) -> str:
    """IPython's argparse text without its reStructuredText ``::`` prefix."""
    return text.strip().removeprefix("::").strip()


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, *, cell: bool = False) -> Callable[[Run], Run]:
    """Register a ``magic_arguments``-decorated function as ``%microlib NAME``."""

    def register(fn: Run) -> Run:
        parser: argparse.ArgumentParser = fn.parser  # type: ignore[attr-defined]
        # IPython's help formatter prefixes usage with "%": "%microlib x" reads "%%microlib x".
        parser.prog = f"%microlib {name}" if cell else f"microlib {name}"
        summary = (parser.description or "").strip().splitlines()[0]
        SUBCOMMANDS[name] = Subcommand(name, fn, parser, summary, cell)
        return fn

    return register


def help_text(name: str | None = None) -> str:
    """The help of one subcommand, or a summary of all (what ``%microlib?`` shows)."""
    if name is not None:
        sub = SUBCOMMANDS.get(name)
        if sub is None:
            raise UsageError(unknown(name))
        return _clean(sub.parser.format_help())
    lines = ["Microservice models in notebook cells, served by the in-kernel host.", ""]
    for title, want_cell in (("Cell magics:", True), ("\nLine magics:", False)):
        lines.append(title)
        for sub in SUBCOMMANDS.values():
            if sub.cell == want_cell:
                lines.append(f"  {sub.usage}")
                lines.append(f"      {sub.summary}")
    lines += ["", "%microlib help SUBCOMMAND (or SUBCOMMAND -h) for its options."]
    return "\n".join(lines)


def unknown(name: str) -> str:
    return f"unknown subcommand {name!r}; one of: {', '.join(SUBCOMMANDS)}"
