"""Datasources: the ``DataSource`` port, its registry and the built-in stores.

Store modules import their database libraries lazily, so importing this package
opens nothing.
"""

from .base import Column, DataSource, Query, SchemaChange, SqlEngine, TableSchema, WriteOp
from .registry import available_schemes, create_datasource, register_datasource

__all__ = [
    "Column",
    "DataSource",
    "Query",
    "SchemaChange",
    "SqlEngine",
    "TableSchema",
    "WriteOp",
    "available_schemes",
    "create_datasource",
    "register_datasource",
]
