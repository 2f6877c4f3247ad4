"""The binder/ folder installs what pyproject.toml declares, and the kernel spec."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
BINDER = ROOT / "binder"


def normalized(lines: list[str]) -> dict[str, str]:
    reqs = [Requirement(line) for line in lines]
    return {re.sub(r"[-_.]+", "-", r.name).lower(): str(r) for r in reqs}


def test_requirements_are_the_package_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = [
        line.strip()
        for line in (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert normalized(lines) == normalized(project["dependencies"])


def test_runtime_satisfies_requires_python() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    assert runtime.startswith("python-")
    assert runtime.removeprefix("python-") + ".0" in SpecifierSet(project["requires-python"])


def test_post_build_installs_the_package_and_the_kernel_spec() -> None:
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    commands = [line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")]
    assert commands[0] == "set -euo pipefail"
    assert "python -m pip install --no-deps ." in commands  # deps: requirements.txt
    assert "microlib kernel install --sys-prefix" in commands
