"""SQL text both SQL stores (DuckDB, PostgreSQL) write the same way."""

from __future__ import annotations

from ..domain.query import Query


def quote(name: str) -> str:
    """A quoted SQL identifier (both dialects double the quote)."""
    return '"' + name.replace('"', '""') + '"'


def order_and_page(query: Query) -> str:
    """`` ORDER BY ... LIMIT n OFFSET m`` of a list query (empty parts left out)."""
    order = ""
    if query.order:
        order = " ORDER BY " + ", ".join(
            f"{quote(c)} {'DESC' if d else 'ASC'} NULLS LAST" for c, d in query.order
        )
    page = ""
    if query.limit is not None:
        page += f" LIMIT {int(query.limit)}"
    if query.offset:
        page += f" OFFSET {int(query.offset)}"
    return order + page
