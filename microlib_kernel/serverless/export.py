"""``microlib export lambda NOTEBOOK -o DIR``: a deployable AWS Lambda bundle.

The bundle is a folder SAM (``sam build``) or a zip file can take as it is::

    DIR/handler.py              the entry point, handler.handler
    DIR/microlib_sources/       the notebook's %%microlib cells, one .py file each,
                                and manifest.json (order, kinds, names, versions)
    DIR/microlib_kernel/        this package, copied (it is not installed from PyPI)
    DIR/requirements.txt        what the function imports, pinned to the versions here
    DIR/template.yaml           an AWS SAM template (HTTP API, environment settings)
    DIR/README.md               how to deploy it, with SAM or the AWS CLI

Before anything is written the sources are published into a throw-away in-memory
host and the API is asked for its ``/config``, so a cell that would fail at cold start
on Lambda fails here, with its cell number (``check=False`` skips this).
"""

from __future__ import annotations

import compileall
import datetime as dt
import importlib.metadata as metadata
import json
import py_compile
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MicrolibError
from .sources import Source, notebook_sources, write_sources
from .templates import bundle_readme, handler_module, sam_template

#: The distributions a Lambda function imports: what the host, the HTTP app and the
#: Lambda adapter import (``cryptography`` only for ``Secret`` fields). The notebook,
#: papermill, uvicorn and httpx parts of microlib-kernel are never imported there.
RUNTIME_ROOTS = ("mangum", "pydantic", "starlette", "anyio", "duckdb", "cryptography")
ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
SOURCES_DIR = "microlib_sources"
PACKAGE_DIR = "microlib_kernel"


@dataclass
class LambdaBundle:
    """What :func:`export_lambda` wrote.

    Attributes:
        path: the bundle folder.
        sources: the sources exported, in publishing order.
        models: ``[(name, version, endpoint)]`` the check published (empty unchecked).
        requirements: the pinned requirement lines.
        runtime: the Lambda runtime (``python3.11``).
    """

    path: Path
    sources: list[Source]
    models: list[tuple[str, str, str]] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    runtime: str = ""

    def summary(self) -> str:
        """What was written and what to do next, for the CLI."""
        counts: dict[str, int] = {}
        for s in self.sources:
            counts[s.kind] = counts.get(s.kind, 0) + 1
        what = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items())
        lines = [f"wrote an AWS Lambda bundle to {self.path} ({what}; {self.runtime})"]
        for name, version, endpoint in self.models:
            lines.append(f"  {name} {version} at /{endpoint}")
        lines.append(f"entry point handler.handler; deploy: cd {self.path} && sam build && ")
        lines[-1] += "sam deploy --guided (README.md has the AWS CLI steps)"
        return "\n".join(lines)


def export_lambda(
    notebook: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    check: bool = True,
    package: bool = True,
    architecture: str = "x86_64",
    memory: int = 1024,
    timeout: int = 30,
) -> LambdaBundle:
    """Write the Lambda bundle of ``notebook`` into ``out``.

    Args:
        notebook: the ``.ipynb`` file.
        out: the bundle folder; it must be empty or missing unless ``force``.
        force: write into a folder that has files (ours are replaced; other files,
            such as dependencies installed there with ``pip install -t``, stay).
        check: publish the sources into an in-memory host first (runs their code).
        package: copy the ``microlib_kernel`` package into the bundle.
        architecture: ``x86_64`` or ``arm64`` (the wheels must match it).
        memory: the function's memory in MB (Lambda gives CPU in proportion).
        timeout: the function's timeout in seconds.

    Raises:
        MicrolibError: the notebook has nothing to deploy, a cell fails the check,
            the folder is not empty, or Mangum is not installed.
    """
    nb = Path(notebook)
    if architecture not in ARCHITECTURES:
        raise MicrolibError(f"--arch must be one of {', '.join(ARCHITECTURES)}")
    sources = notebook_sources(nb)
    if not sources:
        raise MicrolibError(
            f"{nb} has no %%microlib model, adapter, service or module cell: nothing to export"
        )
    target = Path(out)
    _check_target(target, force)
    bundle = LambdaBundle(target, sources, runtime=lambda_runtime())
    bundle.requirements = pinned_requirements(architecture)
    if check:
        bundle.models = check_sources(sources)
    version = _version("microlib-kernel") or "unknown"
    target.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target / SOURCES_DIR, ignore_errors=True)
    manifest = write_sources(
        target / SOURCES_DIR,
        sources,
        notebook=nb.name,
        exported=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        microlib_kernel=version,
    )
    if package:
        copy_package(target / PACKAGE_DIR)
    (target / "handler.py").write_text(handler_module(nb.name), encoding="utf-8")
    (target / "requirements.txt").write_text(
        _requirements_text(bundle.requirements, version, package), encoding="utf-8"
    )
    about = {
        "notebook": nb.name,
        "runtime": bundle.runtime,
        "architecture": architecture,
        "python_version": _python_version(),
        "microlib_kernel": version,
        "models": bundle.models,
        "manifest": manifest,
        "package": package,
        "memory": memory,
        "timeout": timeout,
        "api_root": _api_root(),
    }
    (target / "template.yaml").write_text(sam_template(about), encoding="utf-8")
    (target / "README.md").write_text(bundle_readme(about), encoding="utf-8")
    return bundle


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise MicrolibError(f"{target} exists and is not a folder")
    if force or not target.exists():
        return
    if any(target.iterdir()):
        raise MicrolibError(
            f"{target} is not empty; choose another folder, or --force to write into it "
            "(files of an earlier export are replaced, others are kept)"
        )


def check_sources(sources: list[Source]) -> list[tuple[str, str, str]]:
    """Publish ``sources`` into an in-memory host and ask the API for its ``/config``.

    Returns:
        ``[(name, version, endpoint)]`` of the models served.

    Raises:
        MicrolibError: a source fails (with its cell), or the API does not answer.
    """
    from .handler import make_handler

    function = make_handler(sources, "memory://")
    try:
        root = function.host.settings.api_root.rstrip("/")
        reply = function(_config_event(root), None)
        if reply.get("statusCode") != 200:
            raise MicrolibError(f"the exported API answered {reply.get('statusCode')} on /config")
        models = json.loads(reply["body"])["models"]
        return [(m["name"], m["active"], m["endpoint"]) for m in models]
    finally:
        function.close()


def _config_event(root: str) -> dict[str, Any]:
    """A Function URL event for ``GET ROOT/config`` (payload format 2.0)."""
    path = f"{root}/config"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "export-check.lambda-url.local", "accept": "application/json"},
        "requestContext": {
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
            },
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def copy_package(target: Path) -> None:
    """Copy the running ``microlib_kernel`` package (sources and static files) to ``target``.

    The copy is byte-compiled for this Python (the bundle's runtime): ``/var/task`` is
    read-only on Lambda, so without ``.pyc`` files every cold start would compile the
    whole package again. The ``.pyc`` files are checked against a hash of their source
    (not its modification time, which zip files and copies do not keep reliably).
    """
    source = Path(__file__).resolve().parents[1]  # the microlib_kernel package
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compiled = compileall.compile_dir(
        str(target),
        quiet=2,
        invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
    )
    if not compiled:
        raise MicrolibError(f"byte-compiling the copy of microlib_kernel in {target} failed")


def lambda_runtime() -> str:
    """The Lambda runtime matching this Python (pinned wheels are built for it)."""
    return f"python{_python_version()}"


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _api_root() -> str:
    from ..config import Settings

    return Settings.load().api_root.rstrip("/")


def pinned_requirements(architecture: str = "x86_64") -> list[str]:
    """``name==version`` for :data:`RUNTIME_ROOTS` and everything they require on Lambda.

    Requirements are followed through the installed distributions' metadata, with
    markers evaluated for Linux on ``architecture`` and this Python version.

    Raises:
        MicrolibError: Mangum is not installed (the ``serverless`` extra).
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if _version("mangum") is None:
        raise MicrolibError(
            "Mangum is not installed: pip install 'microlib-kernel[serverless]' (the Lambda "
            "bundle pins the versions installed here)"
        )
    env = {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": ARCHITECTURES[architecture],
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": _python_version(),
        "python_full_version": ".".join(map(str, sys.version_info[:3])),
        "extra": "",
    }
    pinned: dict[str, str] = {}
    queue = list(RUNTIME_ROOTS)
    while queue:
        key = canonicalize_name(queue.pop(0))
        if key in pinned:
            continue
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            pinned[key] = f"{key}  # not installed where the bundle was exported: unpinned"
            continue
        pinned[key] = f"{dist.metadata['Name']}=={dist.version}"
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                queue.append(req.name)
    return [pinned[k] for k in sorted(pinned)]


def _requirements_text(lines: list[str], version: str, package: bool) -> str:
    where = (
        f"# microlib-kernel {version} itself is in this folder ({PACKAGE_DIR}/), copied by the "
        "export:\n# it is not installed from PyPI, and its notebook dependencies (Jupyter, "
        "papermill,\n# uvicorn) are not needed on Lambda."
        if package
        else f"# microlib-kernel {version} is not in this folder (--no-package): install it "
        "into the bundle\n# without its notebook dependencies, e.g. pip install --no-deps "
        f"-t . microlib_kernel-{version}-py3-none-any.whl"
    )
    head = (
        "# What the Lambda function imports, pinned to the versions installed where it was\n"
        "# exported (`microlib export lambda`). `sam build` installs these for the runtime;\n"
        "# README.md shows the pip command for a zip file.\n"
    )
    return head + where + "\n" + "\n".join(lines) + "\n"
