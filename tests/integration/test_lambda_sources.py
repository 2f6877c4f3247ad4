"""Loading a handler's sources from notebooks and exported folders, and what is refused."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from microlib_kernel.errors import DeployRefused
from microlib_kernel.serverless import load_sources, make_handler
from microlib_kernel.serverless.sources import folder_sources, notebook_sources, write_sources
from tests.lambda_support import SHOP, event, reply


def notebook(path: Path, *sources: str, **document: Any) -> Path:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for s in sources
    ]
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5, **document})
    )
    return path


def test_shop_notebook_sources() -> None:
    sources = notebook_sources(SHOP)
    assert [(s.kind, s.name, s.cell) for s in sources] == [
        ("module", "pricing", 3),
        ("service", "tax_office", 4),
        ("adapter", "billing", 5),
        ("model", None, 6),
    ]
    assert sources[0].origin == "shop.ipynb cell 3"
    assert sources[0].text.startswith("VAT = 0.2")


def test_cell_source_as_one_string(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "one.ipynb", "%%microlib module m\nX = 1\n")
    assert [(s.kind, s.name, s.text) for s in notebook_sources(nb)] == [("module", "m", "X = 1\n")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"nbformat": 3, "worksheets": []}', "nbformat 3"),
        ("[1, 2]", "not an nbformat 4 notebook"),
    ],
)
def test_files_that_are_not_notebooks(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(content)
    with pytest.raises(DeployRefused, match=message):
        notebook_sources(path)


def test_load_sources_refuses_other_things(tmp_path: Path) -> None:
    with pytest.raises(DeployRefused, match=r"cannot read notebook .*No such file"):
        load_sources(tmp_path / "missing.ipynb")
    with pytest.raises(DeployRefused, match="does not exist"):
        load_sources(tmp_path / "missing")
    (tmp_path / "x.py").write_text("")
    with pytest.raises(DeployRefused, match="neither a notebook"):
        load_sources(tmp_path / "x.py")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployRefused, match=r"no manifest.json"):
        load_sources(tmp_path / "empty")


def test_a_folder_without_manifest_is_read_by_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "10_model.py").write_text(
        "from microlib_kernel import Model\nfrom microlib_modules.names import upper\n\n"
        "class Note(Model, endpoint='notes'):\n    text: str\n"
    )
    (folder / "2_module_names.py").write_text("def upper(s):\n    return s.upper()\n")
    (folder / "README.txt").write_text("not a source")
    sources = folder_sources(folder)
    assert [(s.kind, s.name) for s in sources] == [("module", "names"), ("model", None)]
    fn = make_handler(folder, "memory://")
    try:
        ev = event("function_url", "POST", "/microlib/api/models/notes", body={"text": "x"})
        got = reply("function_url", fn(ev, None))
        assert got.status == 201, got.body
    finally:
        fn.close()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file": "01_model.py", "kind": "widget"}, "kind must be one of"),
        ({"file": "../outside.py", "kind": "model"}, "must be a .py file name"),
        ({"file": "01_model.txt", "kind": "model"}, "must be a .py file name"),
        ({"file": "missing.py", "kind": "model"}, "cannot read source"),
        ({"file": "01_model.py", "kind": "adapter", "name": "a-b"}, "needs a name"),
        ({"file": "01_model.py", "kind": "model", "version": "v1"}, "must look like 1.2.0"),
        ("01_model.py", "is not an object"),
    ],
)
def test_manifest_errors(tmp_path: Path, entry: Any, message: str) -> None:
    (tmp_path / "01_model.py").write_text("x = 1\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "sources": [entry]}))
    with pytest.raises(DeployRefused, match=message):
        folder_sources(tmp_path)


def test_manifest_of_another_format(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 9, "sources": []}))
    with pytest.raises(DeployRefused, match="format 9"):
        folder_sources(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DeployRefused, match="cannot read"):
        folder_sources(tmp_path)


def test_write_then_read_keeps_order_names_and_versions(tmp_path: Path) -> None:
    sources = notebook_sources(SHOP)
    manifest = write_sources(tmp_path / "out", sources, notebook="shop.ipynb")
    assert [e["file"] for e in manifest["sources"]] == [
        "01_module_pricing.py",
        "02_service_tax_office.py",
        "03_adapter_billing.py",
        "04_model.py",
    ]
    back = folder_sources(tmp_path / "out")
    assert [(s.kind, s.name, s.version, s.origin) for s in back] == [
        (s.kind, s.name, s.version, s.origin) for s in sources
    ]


def test_pinned_versions_are_published(tmp_path: Path) -> None:
    nb = notebook(
        tmp_path / "v.ipynb",
        "%%microlib model --version 2.3.0\nfrom microlib_kernel import Model\n\n"
        "class Item(Model, endpoint='items'):\n    name: str = ''\n",
    )
    fn = make_handler(nb, "memory://")
    try:
        assert [(p.name, p.version) for p in fn.published] == [("Item", "2.3.0")]
        assert "Item 2.3.0" in repr(fn)
    finally:
        fn.close()


def test_a_notebook_with_nothing_to_serve(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "empty.ipynb", "print('hello')", "%%microlib sql\nSELECT 1")
    with pytest.raises(DeployRefused, match="nothing to serve"):
        make_handler(nb, "memory://")


def test_a_failing_cell_names_itself_and_leaves_no_host_running(tmp_path: Path) -> None:
    nb = notebook(
        tmp_path / "broken.ipynb",
        "%%microlib module ok\nX = 1\n",
        "%%microlib adapter pay\nimport does_not_exist_anywhere\n",
    )
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(DeployRefused) as info:
        make_handler(nb, "memory://")
    assert info.value.message.startswith("broken.ipynb cell 2 (adapter pay): ")
    assert "ModuleNotFoundError" in info.value.message
    assert not {t.name for t in threading.enumerate()} - before


def test_a_closed_host_answers_503(tmp_path: Path) -> None:
    nb = notebook(tmp_path / "m.ipynb", "%%microlib module m\nX = 1\n")
    fn = make_handler(nb, "memory://")
    fn.close()
    got = reply("alb", fn(event("alb", "GET", "/microlib/api/health"), None))
    assert got.status == 503
    assert got.raw["statusDescription"] == "503 Service Unavailable"
    assert got.json()["error_type"] == "ServiceUnavailable"
