"""The fast paths of the DuckDB store: how rows go in and out in bulk.

Three statements, each chosen by measurement (README, "Where the time goes"):

* one new row: ``INSERT ... VALUES ($1, ...)``. DuckDB binds scalars directly, where
  ``unnest`` of one-element lists costs ~40% more CPU per statement (the POST at c=1).
* many new rows, with pyarrow installed (the ``arrow`` extra): the columns go in as one
  Arrow table, which DuckDB scans without converting Python lists value by value
  (~3x faster than ``unnest`` for 100,000 rows); a column that holds one value in
  every row is bound once as a parameter instead (as is one of a few rows' ``unnest``).
* a list of many rows: DuckDB renders each row as JSON text (``to_json``), and pydantic
  validates the whole list from JSON in one call, which skips building a Python
  dict per row and decoding its JSON columns in Python. When no row can come from
  the cache, no Python tuple or string per row is made at all: with pyarrow, the
  rows are read as Arrow batches of :data:`JSON_BATCH_ROWS`, whose text lies end to
  end in one buffer that becomes a JSON array as it is (:func:`json_array_bytes`),
  and the store reads the next batch while the caller validates the last (0.60 s
  against 0.85 s for 100,000 rows); without pyarrow, or for a page that fits one
  batch, DuckDB joins the rows into one JSON array (``string_agg``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from itertools import repeat
from operator import is_, itemgetter
from typing import Any

from ..domain.query import Query
from ..domain.types import ValueType
from .base import Repeated
from .duckdb_types import bound_as_is, encoder, identity, param_expr, quote, sql_type

_ARROW_TYPES = {"string": "string", "integer": "int64", "float": "float64", "boolean": "bool_"}
# Arrow's import costs ~0.3 s: paid on the first bulk write, not at import time.
_arrow: Any = None
_arrow_lock = threading.Lock()
#: Fewer rows than this go through ``unnest``: registering an Arrow table has a fixed cost.
ARROW_MIN_ROWS = 256
#: Rows per batch of a list read as Arrow batches: large enough that a batch's fixed
#: costs vanish, small enough that reading the next overlaps validating this one.
JSON_BATCH_ROWS = 20_000


def arrow() -> Any:
    """The ``pyarrow`` module, or ``None`` when it is not installed."""
    global _arrow
    with _arrow_lock:
        if _arrow is None:
            try:
                import pyarrow

                _arrow = pyarrow
            except ImportError:
                _arrow = False
    return _arrow or None


def _column_expr(ref: str, t: ValueType, bound: bool = False) -> str:
    """How a value carried as ``ref`` (native scalar or text) becomes a ``t`` column.

    A ``bound`` parameter is cast to its column's type even when native: a ``SELECT``
    of a bare parameter has no type of its own to insert.
    """
    if not t.secret and t.kind in _ARROW_TYPES:
        return f"CAST({ref} AS {sql_type(t)})" if bound else ref
    if t.secret or t.kind in ("timestamp", "date", "time", "decimal", "uuid"):
        return f"CAST({ref} AS {sql_type(t)})"
    if t.kind == "json":
        return f"CAST({ref} AS JSON)"
    return f"CAST(CAST({ref} AS JSON) AS {sql_type(t)})"


def values_insert_sql(table: str, columns: Sequence[str], types: dict[str, ValueType]) -> str:
    """``INSERT`` of one row, its values bound as ``$1..$n`` (encoded by :func:`row_encoder`)."""
    names = ", ".join(quote(c) for c in columns)
    exprs = ", ".join(
        f"${i + 1}" if bound_as_is(types[c]) else _column_expr(f"${i + 1}", types[c])
        for i, c in enumerate(columns)
    )
    return f"INSERT INTO {quote(table)} ({names}) VALUES ({exprs})"


def unnest_insert_sql(
    table: str,
    columns: Sequence[str],
    types: dict[str, ValueType],
    repeated: frozenset[str] = frozenset(),
) -> str:
    """``INSERT`` of many rows, one list parameter per column; one value for all rows
    for each column in ``repeated`` (DuckDB repeats a scalar beside ``unnest``).

    A group commit's creates share their version, revision, ``port_flow`` and
    ``compensation``: bound once each, 32 creates cost 17% fewer instructions than
    with a list per column (``bench/write_path.py --unnest``).
    """
    names = ", ".join(quote(c) for c in columns)
    exprs = ", ".join(
        _column_expr(f"${i + 1}", types[c], bound=True) if c in repeated
        else param_expr(i + 1, types[c])
        for i, c in enumerate(columns)
    )  # fmt: skip
    return f"INSERT INTO {quote(table)} ({names}) SELECT {exprs}"


def repeated_columns(
    columns: Sequence[str], types: dict[str, ValueType], values: dict[str, list[Any]]
) -> frozenset[str]:
    """The columns of ``values`` that :func:`_bound_once` binds once. Never all of them:
    an ``unnest`` gives the statement its rows."""
    out = {c for c in columns if _bound_once(values[c], types[c]) is not _VARIES}
    if len(out) == len(columns):
        out.discard(columns[0])
    return frozenset(out)


def arrow_insert(
    cur: Any,
    table: str,
    columns: Sequence[str],
    types: dict[str, ValueType],
    records: Sequence[dict[str, Any]],
) -> bool:
    """Insert ``records`` through one Arrow table (:func:`arrow_insert_columns`).

    ``records`` must share one set of keys (the writer groups them by it).
    """
    # A C-level pass per column, which makes one list. Transposing the records with
    # zip(*) made a tuple per row: 100,000 tracked objects that the cyclic collector
    # walked, ~0.4 s per 100,000 rows against ~0.05 s for this.
    return arrow_insert_columns(
        cur, table, types, {c: list(map(itemgetter(c), records)) for c in columns}
    )


def arrow_insert_columns(
    cur: Any, table: str, types: dict[str, ValueType], columns: dict[str, Sequence[Any]]
) -> bool:
    """Insert the rows whose values by column are ``columns`` with one statement.

    A column that holds one value in every row (a bulk create's timestamps, version,
    revision, defaults) is bound once as a parameter, as a hand-written ``INSERT``
    would write it; the others go in as one Arrow table, which DuckDB scans without
    converting Python values one by one.

    Returns ``False`` (nothing done) when pyarrow is missing or a value does not fit an
    Arrow column: the caller then inserts another way.
    """
    pa = arrow()
    if pa is None:
        return False
    arrays: dict[str, Any] = {}
    params: list[Any] = []
    exprs: list[str] = []
    for c, values in columns.items():
        t = types[c]
        kind = _ARROW_TYPES.get(t.kind, "string") if not t.secret else "string"
        once = _bound_once(values, t)
        if once is not _VARIES:
            params.append(once)
            exprs.append(_column_expr(f"${len(params)}", t, bound=True))
            continue
        ref = f"c{len(arrays)}"
        try:
            arrays[ref] = pa.array(_encoded(values, t), type=getattr(pa, kind)())
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            # A value Arrow cannot hold (an integer beyond 64 bits): the unnest path
            # gets DuckDB's own error for it, which names the problem (a 400).
            return False
        exprs.append(_column_expr(ref, t))
    if not arrays:
        return False  # nothing varies: no table to scan (never a create_many's rows)
    rows = pa.table(arrays)
    del arrays
    view = f"__microlib_rows_{threading.get_ident()}"
    names = ", ".join(quote(c) for c in columns)
    cur.register(view, rows)
    try:
        cur.execute(
            f"INSERT INTO {quote(table)} ({names}) SELECT {', '.join(exprs)} FROM {quote(view)}",
            params,
        )
    finally:
        cur.unregister(view)
        del rows
        # Arrow's allocator keeps the pages of freed tables for its next one: a host
        # that loaded 100k rows in bulk held ~4 MiB more until it did. ~0.1 ms.
        pa.default_memory_pool().release_unused()
    return True


_VARIES = object()


def _bound_once(values: Sequence[Any], t: ValueType) -> Any:
    """The parameter that binds a column of one value (:func:`_one_value`) once, or
    ``_VARIES``. Not an integer beyond ``BIGINT``: as a list (``unnest``) or an Arrow
    column it gets DuckDB's or Arrow's own refusal, which names the problem (a 400)."""
    one = _one_value(values)
    if one is _VARIES:
        return _VARIES
    value = encoder(t)(one)
    if type(value) is int and not -(2**63) <= value < 2**63:
        return _VARIES
    return value


def _one_value(values: Sequence[Any]) -> Any:
    """The value every row of a column holds, or ``_VARIES``.

    Equal text, ``None`` and empty lists or dicts count as one value; any other value
    only when every row holds the very same object (``1 == 1.0 == True`` in Python,
    not in a column). The ends and the middle are compared first: a varying column
    costs three comparisons.
    """
    if isinstance(values, Repeated):
        return values.value
    n = len(values)
    if not n:
        return _VARIES
    first = values[0]
    if first is not values[-1] and first != values[-1]:
        return _VARIES
    if type(first) is str or first is None:
        same = first == values[n // 2] and values.count(first) == n
    elif type(first) in (list, dict) and not first:
        same = set(map(type, values)) == {type(first)} and values.count(first) == n
    else:
        same = all(map(is_, values, repeat(first)))
    return first if same else _VARIES


def _encoded(values: Sequence[Any], t: ValueType) -> Sequence[Any]:
    """A column's values as its Arrow array takes them (a column of one value never
    comes here: :func:`arrow_insert_columns` binds it once)."""
    enc = encoder(t)
    if enc is identity or (t.kind == "float" and not t.secret):
        return values  # native: Arrow converts ints to float64 itself
    return [enc(v) for v in values]


def _json_safe(t: ValueType, nested: bool = False) -> bool:
    """Whether DuckDB's ``to_json`` of this type reads back exactly through pydantic."""
    if t.secret:
        return False
    if t.kind in ("timestamp", "decimal"):
        return not nested  # top-level ones are rendered explicitly (see json_row_expr)
    if t.item is not None:
        return _json_safe(t.item, True)
    return all(_json_safe(ft, True) for _, ft in t.fields)


def json_row_expr(columns: Sequence[str], types: dict[str, ValueType]) -> str | None:
    """A SELECT expression rendering a row of ``columns`` as JSON text (``None``: unsafe).

    Timestamps become ISO 8601 in UTC (``to_json`` writes ``+00``, which pydantic
    refuses) and decimals text (a JSON number would round through a float).
    """
    parts = []
    for c in columns:
        t = types[c]
        if not _json_safe(t):
            return None
        ref = quote(c)
        if t.kind == "timestamp":
            ref = f"strftime({ref} AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ')"
        elif t.kind == "decimal":
            ref = f"CAST({ref} AS VARCHAR)"
        parts.append(f"{quote(c)} := {ref}")
    return f"CAST(to_json(struct_pack({', '.join(parts)})) AS VARCHAR)"


def _ordered_source(query: Query, table: str, where: tuple[str, list[Any]]) -> tuple[str, str]:
    """The rows a list reads (a page cut first, in a subquery) and their ORDER BY."""
    keys = [f"{quote(c)} {'DESC' if d else 'ASC'} NULLS LAST" for c, d in query.order]
    order = ", ".join([*keys, f"{quote('id')} ASC"])
    clause, _ = where
    page = "" if query.limit is None else f" LIMIT {int(query.limit)}"
    page += f" OFFSET {int(query.offset)}" if query.offset else ""
    source = f"{quote(table)}{clause}"
    if page:
        source = f"(SELECT * FROM {source} ORDER BY {order}{page}) AS page"
    return source, order


def json_array_sql(
    table: str, expr: str, query: Query, where: tuple[str, list[Any]]
) -> tuple[str, list[Any]]:
    """``SELECT count(*), <rows of expr joined by commas, in the query's order>``.

    ``string_agg``'s own ``ORDER BY`` keeps the order (an aggregate may see its rows
    in any order). The query's order, then ``id``, orders it: ties come out in one
    order every time. A page is cut first, in a subquery ordered the same way.
    ``where`` is the store's ``(" WHERE ...", params)`` for the query's filters.
    """
    source, order = _ordered_source(query, table, where)
    return f"SELECT count(*), string_agg({expr}, ',' ORDER BY {order}) FROM {source}", where[1]


def json_rows_sql(
    table: str, expr: str, query: Query, where: tuple[str, list[Any]]
) -> tuple[str, list[Any]]:
    """``SELECT <row of expr, then a comma>`` in the query's order (as :func:`json_array_sql`).

    Read as Arrow batches, the rows of a batch lie end to end in one buffer:
    :func:`json_array_bytes` makes that buffer a JSON array without a Python string
    per row, and without the aggregate's sort of the rendered text (the ``ORDER BY``
    inside ``string_agg`` was ~60% of its time for 100,000 rows).
    """
    source, order = _ordered_source(query, table, where)
    return f"SELECT {expr} || ',' FROM {source} ORDER BY {order}", where[1]


def json_array_bytes(column: Any) -> bytes:
    """One JSON array of the rows of an Arrow string column made by :func:`json_rows_sql`
    (each row's object followed by a comma)."""
    pa = arrow()
    rows = len(column)
    if not rows:
        return b"[]"
    if column.type in (pa.string(), pa.large_string()) and not column.null_count:
        offsets = memoryview(column.buffers()[1]).cast("i" if column.type == pa.string() else "q")
        start, end = offsets[column.offset], offsets[column.offset + rows]
        return b"[" + memoryview(column.buffers()[2])[start : end - 1].tobytes() + b"]"
    text = "".join(column.to_pylist())  # another layout: correct, if slower
    return ("[" + text[:-1] + "]").encode()
