"""A notebook's host registers with Jupyter when it serves, and prints URLs through the
Jupyter server's proxy when that server runs the microlib extension (real kernels)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from microlib_kernel.jupyter_server import registry
from microlib_kernel.jupyter_server.registry import ServerRegistration
from tests.notebook_support import Kernel, fresh_shell

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

ORDER = """%%microlib model
from microlib_kernel import Model

class Order(Model, endpoint="orders"):
    total: float = 0.0
"""


class ServerKernel(Kernel):
    """A kernel whose connection file is named as a Jupyter server names it
    (``<runtime>/kernel-<kernel_id>.json``), which is how a kernel knows its id."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import KernelManager

        self.kernel_id = str(uuid.uuid4())
        connection = registry.runtime_dir() / f"kernel-{self.kernel_id}.json"
        self.km = KernelManager(kernel_name="python3", connection_file=str(connection))
        self.km.start_kernel(cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except RuntimeError:
            self.close()
            raise


def wait_until(check, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_the_host_registers_while_it_serves_and_links_through_jupyter(tmp_path: Path) -> None:
    runtime = registry.runtime_dir()
    kernel = ServerKernel(tmp_path)
    try:
        kernel_id = kernel.kernel_id
        path = runtime / f"microlib-host-{kernel_id}.json"
        kernel.ok("%load_ext microlib_kernel")
        kernel.ok(ORDER)  # MICROLIB_SERVE=0 (conftest): published, not serving
        assert not path.exists()

        # No Jupyter server with the extension started this kernel: local URLs.
        served = kernel.ok("%microlib serve --port 0").text()
        reg = json.loads(path.read_text())
        assert reg["kernel_id"] == kernel_id and reg["pid"] == int(
            kernel.value("__import__('os').getpid()")
        )
        assert reg["url"].startswith("http://127.0.0.1:") and reg["api_root"] == "/microlib/api"
        assert reg["token_file"] == str(tmp_path / ".microlib" / "deploy-token")
        assert Path(reg["token_file"]).read_text().strip()  # the server can read it
        assert f"serving at {reg['url']} (API {reg['url']}/microlib/api)" in served
        assert "browser" not in served
        status = kernel.ok("%microlib status").text()
        assert f"/orders <{reg['url']}/microlib/api/models/orders>" in status

        kernel.ok("%microlib stop")
        assert not path.exists()

        # The Jupyter server that launched the kernel (JPY_PARENT_PID: this process)
        # runs the extension: links go through its proxy, under its base URL.
        registry.register_server(ServerRegistration(os.getpid(), "/user/ada/"), runtime)
        proxied = f"/user/ada/microlib/proxy/{kernel_id}/microlib/api"
        served = kernel.ok("%microlib serve --port 0").text()
        url = json.loads(path.read_text())["url"]
        assert f"serving at {url} (API {url}/microlib/api; from the browser: {proxied})" in served
        republished = kernel.ok(ORDER)
        [shown] = republished.of("display_data")
        assert f"published Order 1.0.1 at {proxied}/models/orders" in shown["data"]["text/plain"]
        assert f'href="{proxied}/models/orders"' in shown["data"]["text/html"]
        assert f"/orders <{proxied}/models/orders>" in kernel.ok("%microlib status").text()

        # A kernel that shuts down cleanly unregisters its host.
        kernel.kc.stop_channels()
        kernel.km.shutdown_kernel(now=False)
        assert wait_until(lambda: not path.exists()), "the registration outlived the kernel"
    finally:
        if kernel.km.is_alive():
            kernel.close()


def test_a_killed_kernels_registration_is_cleaned_up_by_readers(tmp_path: Path) -> None:
    runtime = registry.runtime_dir()
    kernel = ServerKernel(tmp_path)
    try:
        kernel_id = kernel.kernel_id
        kernel.ok("%load_ext microlib_kernel")
        kernel.ok("%microlib serve --port 0")
        assert [h.kernel_id for h in registry.live_hosts(runtime)] == [kernel_id]
    finally:
        kernel.close()  # killed: no chance to unregister
    assert wait_until(lambda: registry.live_hosts(runtime) == [])
    assert not list(runtime.glob("microlib-host-*.json"))


def test_a_kernel_jupyter_did_not_name_registers_nothing(tmp_path: Path) -> None:
    # papermill and jupyter_client name connection files freely: no kernel id, no proxy.
    kernel = Kernel(tmp_path)
    try:
        kernel.ok("%load_ext microlib_kernel")
        served = kernel.ok("%microlib serve --port 0").text()
        assert "serving at http://127.0.0.1:" in served and "browser" not in served
        assert not list(registry.runtime_dir().glob("microlib-host-*.json"))
    finally:
        kernel.close()


def test_outside_a_kernel_nothing_is_registered(tmp_path: Path) -> None:
    with fresh_shell() as ip:
        ip.run_line_magic("microlib", "serve --port 0")
        assert not list(registry.runtime_dir().glob("microlib-host-*.json"))
