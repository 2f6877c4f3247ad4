"""Build hook: compile the JupyterLab extension and ship it as shared data.

The metadata lives in pyproject.toml; this file only adds a ``build_labextension``
step before the other build steps (so wheels, sdists built into wheels and
``pip install -e .`` all run it) and declares the built files as data files under
``share/jupyter/labextensions/microlib-kernel``, where JupyterLab finds prebuilt
extensions. See ``extension/build.py`` for what the build does and needs.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from setuptools import Command, setup
from setuptools.command.build import build

HERE = Path(__file__).resolve().parent
LABEXTENSION = HERE / "microlib_kernel" / "labextension"
TARGET = "share/jupyter/labextensions/microlib-kernel"


class BuildLabExtension(Command):
    """Compile ``extension/`` into ``microlib_kernel/labextension`` and list its files."""

    description = "compile the MicroLib JupyterLab extension (needs node and npm)"
    user_options: list[tuple[str, str | None, str]] = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        script = HERE / "extension" / "build.py"
        if script.exists():  # absent from an sdist built without it: use what is there
            builder = runpy.run_path(str(script))
            builder["build"]()
        if not (LABEXTENSION / "package.json").exists():
            return
        files: dict[str, list[str]] = {}
        for path in sorted(LABEXTENSION.rglob("*")):
            if path.is_file():
                folder = path.parent.relative_to(LABEXTENSION).as_posix()
                dest = TARGET if folder == "." else f"{TARGET}/{folder}"
                files.setdefault(dest, []).append(path.relative_to(HERE).as_posix())
        data_files = list(self.distribution.data_files or [])
        data_files += [(dest, names) for dest, names in files.items()]
        self.distribution.data_files = data_files

    def get_outputs(self) -> list[str]:
        return []


class BuildWithLabExtension(build):
    sub_commands = [("build_labextension", None), *build.sub_commands]


setup(cmdclass={"build": BuildWithLabExtension, "build_labextension": BuildLabExtension})
