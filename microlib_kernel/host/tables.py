"""The table behind a model version: framework columns plus the model's own fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..domain.types import ValueType
from ..store.base import Column, TableSchema

if TYPE_CHECKING:
    from .registry import ModelVersion

#: Columns every model table has (the framework fields of ``Model``).
FRAMEWORK_COLUMNS = (
    Column("id", ValueType("string")),
    Column("created_at", ValueType("timestamp")),
    Column("updated_at", ValueType("timestamp")),
    Column("version", ValueType("string")),
    Column("revision", ValueType("integer"), 0, True),
    Column("port_flow", ValueType("list", item=ValueType("string")), [], True),
    Column("compensation", ValueType("string")),
)


def table_schema(mv: ModelVersion) -> TableSchema:
    """The table a model version needs: framework columns, then one per field."""
    user = tuple(Column(f.name, f.type, f.default, f.has_default) for f in mv.spec.fields.values())
    return TableSchema(mv.spec.endpoint, FRAMEWORK_COLUMNS + user)
