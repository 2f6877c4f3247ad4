"""``SqlResult``: the answer to a SQL query, wherever it was run.

A neutral module: the stores build results, the host masks them, the HTTP client
rebuilds them from JSON, the notebook displays them; none of them needs another's
code for that, so the type lives outside all of them and imports nothing of the
package.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any


class SqlResult:
    """The result of a SQL query.

    Attributes:
        columns: column names.
        rows: a list of tuples.
        elapsed: seconds the query took.
    """

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]], elapsed: float = 0.0):
        self.columns = columns
        self.rows = rows
        self.elapsed = elapsed

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Any:
        return iter(self.rows)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return self.rows[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SqlResult):
            return self.columns == other.columns and self.rows == other.rows
        return NotImplemented

    def to_dicts(self) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        """``{"columns": [...], "rows": [[...], ...]}`` with JSON-able values."""
        return {"columns": self.columns, "rows": [[jsonable(v) for v in r] for r in self.rows]}

    def df(self) -> Any:
        """A pandas ``DataFrame`` (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("SqlResult.df() needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.rows, columns=self.columns)

    def __repr__(self) -> str:
        return self._text()

    def _text(self, limit: int = 20) -> str:
        head = [str(c) for c in self.columns]
        body = [[_short(v) for v in row] for row in self.rows[:limit]]
        widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(head)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        more = f" (showing {limit})" if len(self.rows) > limit else ""
        lines.append(f"{len(self.rows)} row(s){more} in {self.elapsed * 1000:.1f} ms")
        return "\n".join(lines)

    def _repr_html_(self, limit: int = 50) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_short(v, 200))}</td>" for v in row) + "</tr>"
            for row in self.rows[:limit]
        )
        more = f", showing the first {limit}" if len(self.rows) > limit else ""
        return (
            f'<table class="microlib-sql"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"</table><small>{len(self.rows)} row(s){more} in {self.elapsed * 1000:.1f} ms</small>"
        )


def _short(value: Any, width: int = 40) -> str:
    text = "NULL" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def jsonable(value: Any) -> Any:
    """A SQL value as JSON (timestamps as ISO text, decimals and UUIDs as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
