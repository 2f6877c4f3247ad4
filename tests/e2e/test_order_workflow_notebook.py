"""The example notebook runs top to bottom in a real kernel (papermill)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "order_workflow.ipynb"


@pytest.mark.slow
@pytest.mark.kernel
def test_order_workflow_notebook_runs(tmp_path: Path) -> None:
    import nbformat
    import papermill

    source = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in source.cells if c.cell_type == "code"), (
        "commit the notebook with its outputs stripped"
    )
    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(out),
        kernel_name="python3",
        cwd=str(tmp_path),
        parameters={"datasource": f"duckdb:///{tmp_path}/orders.duckdb"},
        progress_bar=False,
        execution_timeout=120,
    )
    executed = nbformat.read(out, as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    svgs = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert svgs and "authorize_payment" in svgs[0]["data"]["image/svg+xml"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "compensation=complete" in text and "shipping cost while open: 9.0" in text
