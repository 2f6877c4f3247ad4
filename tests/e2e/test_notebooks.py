"""The example notebooks run top to bottom under papermill, in a kernel in a temp folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def outputs_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
            parts.extend(out.get("traceback", []))
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(parts))


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import papermill

    monkeypatch.setenv("MICROLIB_SERVE", "1")
    monkeypatch.setenv("MICROLIB_PORT", "0")  # a free port: never fight over 8707
    return papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(tmp_path / name),
        cwd=str(tmp_path),
        kernel_name="python3",
        progress_bar=False,
        execution_timeout=120,
    )


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.slow
@pytest.mark.kernel
def test_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("quickstart.ipynb", tmp_path, monkeypatch)
    text = outputs_text(nb)
    assert "published Order 1.0.0 at http://127.0.0.1:" in text
    assert "201 1.0.0" in text  # the API answered from the notebook
    assert "('APPROVED', 2)" in text
    assert "cy" in text and "3 row(s)" in text  # SQL, with $minimum bound
    assert (tmp_path / ".microlib" / "microlib.duckdb").exists()


@pytest.mark.slow
@pytest.mark.kernel
def test_tour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("tour.ipynb", tmp_path, monkeypatch)
    text = outputs_text(nb)
    assert "('pay-1', ['authorize_payment'])" in text  # the port ran, service injected
    assert "loaded 2500 Order instance(s)" in text
    assert "Order routes: 1.0.0=90, 1.1.0=10" in text
    assert "Order 1.0.0 is active" in text
    assert "Customer unpublished" in text
    last = outputs_text(type(nb)(cells=nb.cells[-1:])).split()
    assert last[:3] == ["customers", "---------", "4"]  # SQL still reads an unpublished model
    assert any(
        "application/vnd.jupyter.widget-view+json" in o.get("data", {})
        for c in nb.cells
        for o in c.get("outputs", [])
    )  # the dashboard
