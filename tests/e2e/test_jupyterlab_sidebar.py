"""The MicroLib sidebar in a real JupyterLab, in Debian's Chromium driven by Playwright.

JupyterLab runs as a subprocess (``--allow-root``, test folders, a free port, a token)
with the package's server extension and prebuilt labextension as installed. Cells run
through JupyterLab itself (its ``notebook:run-cell`` command, in the notebook's own
kernel); the test reads what a user sees in the sidebar.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.lab_support import CHROMIUM_FLAGS, JupyterLab, chromium, jupyter_lab

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.browser]

LABEXTENSION = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "microlib-kernel"


CELLS = [
    "%load_ext microlib_kernel",
    """%%microlib model
from microlib_kernel import Model

class Order(Model, endpoint="orders"):
    total: float = 0.0
    status: str = "PENDING"
""",
    """order = await Order.create(total=42.0)
await order.emit("order.checked", {"by": "the browser test"})""",
]

RUN_CELL = """async (index) => {
  const app = window.jupyterapp;
  const panel = app.shell.currentWidget;
  await panel.sessionContext.ready;
  panel.content.activeCellIndex = index;
  await app.commands.execute('notebook:run-cell');
  return panel.content.widgets[index].model.outputs.toJSON();
}"""

FETCH_JSON = """async (url) => {
  const response = await fetch(url, {credentials: 'same-origin'});
  return [response.status, await response.json()];
}"""


@dataclass
class LabPage:
    lab: JupyterLab
    page: Any
    kernel_id: str

    def run_cell(self, index: int) -> str:
        """Run cell ``index`` in JupyterLab; its outputs as text (fails on an error)."""
        outputs = self.page.evaluate(RUN_CELL, index)
        text = []
        for out in outputs:
            assert out["output_type"] != "error", "\n".join(out.get("traceback", []))
            text.append(out.get("text") or out.get("data", {}).get("text/plain", ""))
        return "\n".join("".join(t) if isinstance(t, list) else t for t in text)

    def open_sidebar(self) -> Any:
        self.page.locator('.lm-TabBar-tab[data-id="microlib-sidebar"]').click()
        return self.page.locator("#microlib-sidebar")


def widen_sidebar(page: Any, width: int) -> None:
    """Drag the left sidebar's edge to ``width`` pixels (for a readable screenshot)."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    if box is None:
        return
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 1, y)
    page.mouse.down()
    page.mouse.move(width, y, steps=5)
    page.mouse.up()


def skip_without_labextension() -> None:
    if not (LABEXTENSION / "package.json").exists():
        pytest.skip(
            f"NO LABEXTENSION at {LABEXTENSION}: build it with `make dev` (needs node and npm)"
        )


@pytest.fixture
def lab_page(tmp_path: Path) -> Iterator[LabPage]:
    skip_without_labextension()
    executable = chromium()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "notebooks"
    root.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "orders.ipynb")
    env = {"MICROLIB_SERVE": "1", "MICROLIB_PORT": "0"}  # a free port for the kernel's host
    with jupyter_lab(tmp_path / "lab", root, env) as lab, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 820})
            page.set_default_timeout(60_000)
            page.goto(lab.lab_url("orders.ipynb"))
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
            page.wait_for_function(
                "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
            )
            kernel_id = page.evaluate(
                "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id"
            )
            yield LabPage(lab, page, kernel_id)
        finally:
            browser.close()


def test_the_sidebar_shows_the_kernel_host_its_models_endpoint_and_live_events(
    lab_page: LabPage, tmp_path: Path
) -> None:
    lab, page, kid = lab_page.lab, lab_page.page, lab_page.kernel_id
    api = f"{lab.url}/microlib/proxy/{kid}/microlib/api"
    endpoint = f"{api}/models/orders"

    lab_page.run_cell(0)
    published = lab_page.run_cell(1)
    # Under a Jupyter server with the extension, the magics print proxied URLs.
    assert f"published Order 1.0.0 at /microlib/proxy/{kid}/microlib/api/models/orders" in (
        published
    )

    sidebar = lab_page.open_sidebar()
    model = sidebar.locator('.jp-Microlib-model[data-model="Order"]')
    model.wait_for()
    host = sidebar.locator(f'.jp-Microlib-host[data-kernel-id="{kid}"]')
    assert host.locator(".jp-Microlib-hostName").inner_text() == "orders.ipynb"
    assert model.locator(".jp-Microlib-version").inner_text() == "1.0.0"
    assert model.locator(".jp-Microlib-endpoint .jp-Microlib-urlText").inner_text() == endpoint
    assert sidebar.locator('.jp-Microlib-route[data-model="Order"]').inner_text() == (
        "Order: 1.0.0 100%"
    )
    assert host.locator(".jp-Microlib-docs").get_attribute("href") == f"{api}/docs"

    # The event feed is subscribed: an event emitted by a cell shows up in it.
    host.locator('.jp-Microlib-feed[data-state="live"]').wait_for()
    lab_page.run_cell(2)
    checked = host.locator('.jp-Microlib-event[data-event="order.checked"]')
    checked.wait_for()
    assert host.locator('.jp-Microlib-event[data-event="order.created"]').count() == 1
    page.wait_for_function(
        '() => document.querySelector(\'.jp-Microlib-model[data-model="Order"] '
        ".jp-Microlib-count')?.textContent === '1 row'"
    )

    # The proxied endpoint answers the browser (Jupyter's login cookie authenticates it).
    status, orders = page.evaluate(FETCH_JSON, endpoint)
    assert status == 200 and [o["total"] for o in orders] == [42.0]

    widen_sidebar(page, 420)
    page.screenshot(path=str(tmp_path / "microlib-sidebar.png"))
    if os.environ.get("SIDEBAR_SCREENSHOT"):  # refresh the README's picture on purpose
        shutil.copyfile(tmp_path / "microlib-sidebar.png", os.environ["SIDEBAR_SCREENSHOT"])

    # "API docs" opens Swagger UI through the proxy, and it reads the live OpenAPI.
    with page.context.expect_page() as opened:
        host.locator(".jp-Microlib-docs").click()
    docs = opened.value
    docs.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=60_000)
    paths = docs.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
    assert any("/microlib/api/models/orders" in p for p in paths), paths
    docs.close()


def test_rollback_and_unpublish_from_the_sidebar(lab_page: LabPage) -> None:
    page = lab_page.page
    lab_page.run_cell(0)
    lab_page.run_cell(1)
    lab_page.run_cell(1)  # 1.0.1
    sidebar = lab_page.open_sidebar()
    model = sidebar.locator('.jp-Microlib-model[data-model="Order"]')
    page.wait_for_function(
        '() => document.querySelector(\'.jp-Microlib-model[data-model="Order"] '
        ".jp-Microlib-version')?.textContent === '1.0.1'"
    )

    model.locator(".jp-Microlib-rollback").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator("select").select_option("1.0.0")
    dialog.locator(".jp-mod-accept").click()
    page.wait_for_function(
        '() => document.querySelector(\'.jp-Microlib-model[data-model="Order"] '
        ".jp-Microlib-version')?.textContent === '1.0.0'"
    )

    model.locator(".jp-Microlib-unpublish").click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    # An unpublished model leaves the host's /config (its data stays).
    model.wait_for(state="detached")
    assert sidebar.locator(".jp-Microlib-host .jp-Microlib-empty").first.inner_text() == (
        "no model published yet"
    )
    endpoint = f"{lab_page.lab.url}/microlib/proxy/{lab_page.kernel_id}/microlib/api/models/orders"
    status, _ = page.evaluate(FETCH_JSON, endpoint)
    assert status == 404
