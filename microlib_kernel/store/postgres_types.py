"""Value types as PostgreSQL column types, and how bulk writes carry them.

Scalars get their own PostgreSQL type (``TEXT``, ``BIGINT``, ``TIMESTAMPTZ`` ...).
Nested values (lists, structs, free JSON) are ``JSONB``: PostgreSQL has no struct
type a schema can grow without a migration, and ``JSONB`` keeps them queryable
(``items -> 0 ->> 'sku'``, ``jsonb_array_elements``).

Bulk writes pass one array parameter per column and ``unnest`` them, like the DuckDB
store: values psycopg can bind natively travel as themselves, the rest as text that
PostgreSQL casts into the column type.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..domain.types import ValueType
from .sql_text import quote  # noqa: F401 - re-exported: the stores import it from here

_SCALAR_SQL = {
    "string": "TEXT",
    "integer": "BIGINT",
    "float": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "time": "TIME",
    "decimal": "NUMERIC(38,10)",
    "uuid": "UUID",
    "json": "JSONB",
}
#: What ``information_schema.columns.data_type`` says for each column type.
_CATALOG_NAME = {
    "TEXT": "text",
    "BIGINT": "bigint",
    "DOUBLE PRECISION": "double precision",
    "BOOLEAN": "boolean",
    "TIMESTAMPTZ": "timestamp with time zone",
    "DATE": "date",
    "TIME": "time without time zone",
    "NUMERIC(38,10)": "numeric",
    "UUID": "uuid",
    "JSONB": "jsonb",
}
# The array type each column's parameter is bound as (scalars psycopg adapts natively).
_PARAM_ARRAY = {"string": "text", "integer": "bigint", "float": "float8", "boolean": "boolean"}


def sql_type(t: ValueType) -> str:
    """The PostgreSQL type of a value type."""
    if t.secret:
        return "TEXT"
    if t.kind in ("list", "struct"):
        return "JSONB"
    return _SCALAR_SQL[t.kind]


def catalog_name(t: ValueType) -> str:
    """The ``data_type`` the catalog reports for a column of this value type."""
    return _CATALOG_NAME[sql_type(t)]


def param_array(t: ValueType) -> str:
    """The array type a column's bulk parameter is bound as."""
    if not t.secret and t.kind in _PARAM_ARRAY:
        return _PARAM_ARRAY[t.kind]
    return "text"


def cast_expr(alias: str, t: ValueType) -> str:
    """The expression turning an unnested parameter column into the column's type."""
    if param_array(t) != "text" or sql_type(t) == "TEXT":
        return alias
    return f"{alias}::{sql_type(t)}"


def encoder(t: ValueType) -> Callable[[Any], Any]:
    """Turns a JSON-mode value into what the column's array parameter carries."""
    if not t.secret and t.kind in _PARAM_ARRAY:
        if t.kind == "float":
            return lambda v: None if v is None else float(v)
        return _identity
    if t.secret or t.kind not in ("list", "struct", "json"):
        return lambda v: None if v is None else str(v)
    return _to_json_text


def guess(catalog_type: str) -> ValueType:
    """How to read a column no published field describes (a removed field's data)."""
    for kind, sql in _SCALAR_SQL.items():
        if _CATALOG_NAME[sql] == catalog_type:
            return ValueType(kind)  # type: ignore[arg-type]
    return ValueType("string")


def _identity(v: Any) -> Any:
    return v


def _to_json_text(v: Any) -> str | None:
    # JSON null stays SQL NULL, like the DuckDB store (a nullable field reads back None).
    return None if v is None else json.dumps(v, separators=(",", ":"), default=str)
