"""What the module layout promises beyond import-linter's contracts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import microlib_kernel
from microlib_kernel.domain.model import FRAMEWORK_FIELDS, Model
from microlib_kernel.sql_result import SqlResult
from microlib_kernel.version import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_module_matches_the_project_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
    assert microlib_kernel.__version__ == __version__


def test_the_root_re_exports_the_neutral_result_type() -> None:
    assert microlib_kernel.SqlResult is SqlResult


def test_the_framework_fields_are_the_fields_model_declares() -> None:
    # The spec compiler tells framework fields by Model's own fields; the host and
    # the HTTP layer read FRAMEWORK_FIELDS: both must name the same fields.
    assert tuple(Model.model_fields) == FRAMEWORK_FIELDS
