"""Helpers of the notebook tests: a fresh IPython shell, and a real Jupyter kernel."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def fresh_shell(load: bool = True) -> Iterator[Any]:
    """A new IPython ``InteractiveShell`` (no history file), the extension loaded."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from microlib_kernel.notebook.extension import unload_ipython_extension

    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.clear_instance()
    ip = InteractiveShell.instance(config=config)
    try:
        if load:
            ip.run_line_magic("load_ext", "microlib_kernel")
        yield ip
    finally:
        unload_ipython_extension(ip)
        ip.extension_manager.loaded.discard("microlib_kernel")
        InteractiveShell.clear_instance()


@dataclass
class Reply:
    """What executing one cell in a kernel produced."""

    status: str
    ename: str | None
    evalue: str | None
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def text(self) -> str:
        """Every stream text and text/plain output, joined."""
        parts = []
        for kind, content in self.outputs:
            if kind == "stream":
                parts.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                parts.append("\n".join(content["traceback"]))
        return "\n".join(parts)

    def html(self) -> str:
        return "\n".join(
            c["data"].get("text/html", "")
            for k, c in self.outputs
            if k in ("execute_result", "display_data")
        )

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [c for k, c in self.outputs if k == kind]


class Kernel:
    """A real IPython kernel started with jupyter_client, in ``cwd``.

    The environment (Jupyter/IPython folders, ``MICROLIB_*``) is the test's, which the
    root conftest isolated.
    """

    def __init__(self, cwd: Path, kernel_name: str = "python3") -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name=kernel_name, cwd=str(cwd))

    def run(self, code: str, timeout: float = 60) -> Reply:
        """Execute ``code``; return its reply and the outputs it produced."""
        outputs: list[tuple[str, dict[str, Any]]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] not in ("status", "execute_input"):
                outputs.append((msg["msg_type"], msg["content"]))

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        c = reply["content"]
        return Reply(c["status"], c.get("ename"), c.get("evalue"), outputs)

    def ok(self, code: str, timeout: float = 60) -> Reply:
        """Execute ``code`` and fail the test (with the outputs) unless it succeeded."""
        reply = self.run(code, timeout)
        assert reply.status == "ok", reply.text()
        return reply

    def value(self, expr: str) -> str:
        """``repr`` of an expression evaluated in the kernel (through ``print``)."""
        return self.ok(f"print(repr({expr}))").text().strip()

    def iopub_during(self, code: str, timeout: float = 30) -> list[tuple[float, dict[str, Any]]]:
        """Run ``code`` and collect every IOPub message with its arrival time, until idle."""
        msg_id = self.kc.execute(code)
        got: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            got.append((time.monotonic(), msg))
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id
            ):
                break
        self.kc.get_shell_msg(timeout=timeout)
        return got

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
