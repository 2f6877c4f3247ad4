"""``microlib export lambda``: the bundle, its files, and its refusals."""

from __future__ import annotations

import importlib.metadata as metadata
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from microlib_kernel.cli import main
from microlib_kernel.serverless.export import RUNTIME_ROOTS, pinned_requirements
from tests.lambda_support import SHOP

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "notebooks" / "quickstart.ipynb"
TOUR = ROOT / "notebooks" / "tour.ipynb"


def export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", "lambda", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !If...) read as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CloudFormationLoader.add_multi_constructor("!", _tag)


def test_export_quickstart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    code, printed, err = export(capsys, str(QUICKSTART), "-o", str(out))
    assert code == 0, err
    assert "Order 1.0.0 at /orders" in printed
    assert "handler.handler" in printed

    manifest = json.loads((out / "microlib_sources" / "manifest.json").read_text())
    assert manifest["notebook"] == "quickstart.ipynb"
    assert manifest["microlib_kernel"] == metadata.version("microlib-kernel")
    assert manifest["sources"] == [
        {
            "file": "01_model.py",
            "kind": "model",
            "name": None,
            "version": None,
            "origin": "quickstart.ipynb cell 4",
        }
    ]
    model = (out / "microlib_sources" / "01_model.py").read_text()
    assert model.startswith("from typing import Literal")  # the %%microlib line is gone
    assert "class Order(Model" in model

    handler = (out / "handler.py").read_text()
    assert "handler = make_handler(" in handler
    assert (out / "microlib_kernel" / "serverless" / "handler.py").is_file()
    assert (out / "microlib_kernel" / "http" / "static" / "swagger-ui").is_dir()
    # Byte-compiled for this Python, checked by source hash (/var/task is read-only).
    pyc = next((out / "microlib_kernel" / "__pycache__").glob("__init__.*.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b11  # hash-based, checked
    assert not list((out / "microlib_sources").rglob("__pycache__"))


def test_requirements_are_pinned_to_the_running_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    assert export(capsys, str(QUICKSTART), "-o", str(out), "--no-check")[0] == 0
    lines = [
        line
        for line in (out / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    pins = dict(line.split("==") for line in lines)
    for name, version in pins.items():
        assert metadata.version(name) == version, name
    names = {n.lower().replace("_", "-") for n in pins}
    assert {r.replace("_", "-") for r in RUNTIME_ROOTS} <= names
    assert "pydantic-core" in names  # requirements of requirements are pinned too
    # The notebook side of microlib-kernel is not a Lambda dependency.
    assert not names & {"jupyterlab", "ipykernel", "papermill", "uvicorn", "httpx", "ipywidgets"}
    assert lines == pinned_requirements("x86_64")


def test_sam_template_and_readme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    code, _, err = export(
        capsys, str(QUICKSTART), "-o", str(out), "--arch", "arm64", "--memory", "2048"
    )
    assert code == 0, err
    template = yaml.load((out / "template.yaml").read_text(), Loader=_CloudFormationLoader)
    function = template["Resources"]["MicrolibFunction"]["Properties"]
    assert function["Handler"] == "handler.handler"
    assert function["CodeUri"] == "."
    assert function["Runtime"].startswith("python3.")
    assert function["Architectures"] == ["arm64"]
    assert function["MemorySize"] == 2048
    assert function["Environment"]["Variables"]["MICROLIB_DATASOURCE"] == {"Ref": "Datasource"}
    assert template["Parameters"]["Datasource"]["Default"] == "duckdb:////tmp/microlib.duckdb"
    assert template["Parameters"]["AuthTokens"]["NoEcho"] is True
    assert function["Events"]["Api"]["Type"] == "HttpApi"
    assert "/microlib/api" in template["Outputs"]["ApiUrl"]["Value"]["Sub"]

    readme = (out / "README.md").read_text()
    for expected in (
        "sam build",
        "sam deploy --guided",
        "aws lambda create-function",
        "--handler handler.handler",
        "aws lambda create-function-url-config",
        "--platform manylinux2014_aarch64",
        "`memory://`",
        "postgresql://",
        "/microlib/api/models/orders",
    ):
        assert expected in readme, expected


def test_a_folder_with_files_is_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = export(capsys, str(QUICKSTART), "-o", str(out), "--no-check")
    assert code == 1
    assert "not empty" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    # An earlier export, plus dependencies installed into the bundle with pip -t.
    assert export(capsys, str(SHOP), "-o", str(out), "--force", "--no-check")[0] == 0
    (out / "duckdb").mkdir()
    (out / "duckdb" / "__init__.py").write_text("")
    assert len(list((out / "microlib_sources").glob("*.py"))) == 4
    code, _, err = export(capsys, str(QUICKSTART), "-o", str(out), "--force")
    assert code == 0, err
    assert [p.name for p in sorted((out / "microlib_sources").iterdir())] == [
        "01_model.py",
        "manifest.json",
    ]
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "duckdb" / "__init__.py").is_file()


def test_no_package(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    assert export(capsys, str(QUICKSTART), "-o", str(out), "--no-package")[0] == 0
    assert not (out / "microlib_kernel").exists()
    assert "pip install --no-deps" in (out / "requirements.txt").read_text()


def test_a_notebook_without_microlib_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = tmp_path / "plain.ipynb"
    nb.write_text(
        json.dumps(
            {
                "cells": [{"cell_type": "code", "metadata": {}, "source": "1 + 1", "outputs": []}],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    code, _, err = export(capsys, str(nb), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "nothing to export" in err
    assert not (tmp_path / "out").exists()


def test_a_cell_that_would_fail_at_cold_start_fails_the_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tour's second model cell uses names imported by the first one: fine in a
    # notebook, not when each cell runs in a module of its own.
    out = tmp_path / "tour"
    code, _, err = export(capsys, str(TOUR), "-o", str(out))
    assert code == 1
    assert "tour.ipynb cell 28 (model)" in err
    assert "NameError" in err and "import in the cell what it uses" in err
    assert not out.exists()
    code, _, _ = export(capsys, str(TOUR), "-o", str(out), "--no-check")
    assert code == 0
    manifest = json.loads((out / "microlib_sources" / "manifest.json").read_text())
    kinds = [s["kind"] for s in manifest["sources"]]
    assert kinds == ["module", "service", "adapter", "model", "model"]
    assert "--no-check" in (out / "README.md").read_text()


def test_missing_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = export(capsys, str(tmp_path / "nope.ipynb"), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "cannot read notebook" in err


def test_help_lists_export(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "export" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "lambda" in capsys.readouterr().out


def test_exported_sources_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from microlib_kernel.serverless import load_sources

    out = tmp_path / "bundle"
    assert export(capsys, str(SHOP), "-o", str(out), "--no-check")[0] == 0
    from_folder = load_sources(out / "microlib_sources")
    from_notebook = load_sources(SHOP)
    assert [(s.kind, s.name, s.version, s.text.rstrip("\n"), s.origin) for s in from_folder] == [
        (s.kind, s.name, s.version, s.text.rstrip("\n"), s.origin) for s in from_notebook
    ]
