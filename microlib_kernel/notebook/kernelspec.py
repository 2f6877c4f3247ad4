"""The "MicroLib (Python 3)" kernel spec: an IPython kernel that loads the extension.

``microlib kernel install`` writes it. The kernel is ipykernel's own, started with
``--ext=microlib_kernel`` (IPython's ``InteractiveShellApp.extra_extensions``), so a
notebook on this kernel has the in-kernel host and ``%microlib`` without a
``%load_ext`` cell. The Python running the kernel is the one that installed the spec.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

KERNEL_NAME = "microlib"
DISPLAY_NAME = "MicroLib (Python 3)"


def kernel_json(python: str | None = None, display_name: str = DISPLAY_NAME) -> dict[str, Any]:
    """The ``kernel.json`` of the spec."""
    return {
        "argv": [
            python or sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--ext=microlib_kernel",
        ],
        "display_name": display_name,
        "language": "python",
        "metadata": {"debugger": True},
    }


def install_kernel_spec(
    *,
    user: bool = False,
    prefix: str | None = None,
    name: str = KERNEL_NAME,
    display_name: str = DISPLAY_NAME,
) -> str:
    """Install the kernel spec and return the folder it was written to.

    Args:
        user: install for the current user (Jupyter's user data folder).
        prefix: install under ``PREFIX/share/jupyter/kernels`` (``sys.prefix`` for a
            virtual environment). Neither: the system-wide folder.
        name: the kernel's name (folder name; ``jupyter kernelspec list`` shows it).
        display_name: what notebook frontends show in their kernel menu.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp) / name
        spec_dir.mkdir()
        (spec_dir / "kernel.json").write_text(
            json.dumps(kernel_json(display_name=display_name), indent=2) + "\n", encoding="utf-8"
        )
        _copy_logos(spec_dir)
        return str(
            KernelSpecManager().install_kernel_spec(
                str(spec_dir), kernel_name=name, user=user, prefix=prefix
            )
        )


def _copy_logos(spec_dir: Path) -> None:
    """ipykernel's Python logos, so the launcher shows an icon."""
    try:
        from ipykernel.kernelspec import RESOURCES
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return
    for item in Path(RESOURCES).iterdir():
        if item.is_file():
            shutil.copy(item, spec_dir / item.name)
