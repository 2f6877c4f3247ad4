"""Compile the JupyterLab extension into ``microlib_kernel/labextension`` (stdlib only).

Used by ``make`` and by the setuptools build hook (``setup.py``), so ``make test``,
``pip install -e .`` and wheel builds all compile it the same way:

1. ``npm ci`` (the committed ``package-lock.json``; npm's cache goes to
   ``extension/.npm-cache``, never ``$HOME``) when ``node_modules`` is missing or older
   than the lock file;
2. ``npm run build``: ``tsc``, then ``@jupyter/builder`` (rspack) against the
   ``@jupyterlab/core-meta`` installed by ``npm ci``: no network access is needed
   once the packages are installed.

Nothing is rebuilt when the output is newer than every source. Without ``node`` and
``npm`` the Python package still builds (without the sidebar) and a warning says so;
``--require`` makes that an error instead. ``MICROLIB_SKIP_LABEXTENSION=1`` skips it.

``--develop`` is for editable installs (``pip install -e .``), which do not install
data files (setuptools' editable wheels skip them): it links the built extension into
``<sys.prefix>/share/jupyter/labextensions/microlib-kernel`` (as ``jupyter labextension
develop`` would, so a rebuild shows on the next page load) and copies the config that
enables the server extension into ``<sys.prefix>/etc/jupyter/jupyter_server_config.d``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUTPUT = ROOT / "microlib_kernel" / "labextension"
SERVER_CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "microlib_kernel.json"
NAME = "microlib-kernel"
MARKER = OUTPUT / "package.json"
SOURCES = ("src", "style", "package.json", "package-lock.json", "tsconfig.json")


def newest_source() -> float:
    times = []
    for name in SOURCES:
        path = HERE / name
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        times += [p.stat().st_mtime for p in files if p.exists()]
    return max(times, default=0.0)


def up_to_date() -> bool:
    return MARKER.exists() and MARKER.stat().st_mtime >= newest_source()


def npm_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("npm_config_cache", str(HERE / ".npm-cache"))
    env.update(
        npm_config_audit="false",
        npm_config_fund="false",
        npm_config_update_notifier="false",
    )
    return env


def run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run(args, cwd=HERE, env=npm_env(), check=True)


def build(*, force: bool = False, require: bool = False) -> bool:
    """Build if needed; whether the built extension is there afterwards."""
    if os.environ.get("MICROLIB_SKIP_LABEXTENSION", "").strip() in ("1", "true", "yes"):
        print("microlib: MICROLIB_SKIP_LABEXTENSION is set: not building the JupyterLab extension")
        return MARKER.exists()
    if not force and up_to_date():
        return True
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        fallback = "using the earlier build" if MARKER.exists() else "building without it"
        message = (
            "microlib: node and npm are needed to build the JupyterLab extension "
            f"(extension/); {fallback}"
        )
        if require:
            raise SystemExit(message)
        print("\n" + "!" * 78 + f"\n{message}\n" + "!" * 78 + "\n", file=sys.stderr)
        return MARKER.exists()
    installed = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run([npm, "ci", "--no-audit", "--no-fund"])
    run([npm, "run", "build"])
    MARKER.touch()  # newer than every source, even when the bundle did not change
    return True


def develop(prefix: Path) -> None:
    """Link the built extension and copy the server config into the environment ``prefix``."""
    config_dir = prefix / "etc" / "jupyter" / "jupyter_server_config.d"
    config_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SERVER_CONFIG, config_dir / SERVER_CONFIG.name)
    if not MARKER.exists():
        print("microlib: no built JupyterLab extension to link", file=sys.stderr)
        return
    link = prefix / "share" / "jupyter" / "labextensions" / NAME
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)  # a copy from an earlier non-editable install
    link.symlink_to(OUTPUT, target_is_directory=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="build even if up to date")
    parser.add_argument("--require", action="store_true", help="fail without node/npm")
    parser.add_argument(
        "--develop", action="store_true", help="link it into this Python's environment"
    )
    args = parser.parse_args(argv)
    try:
        build(force=args.force, require=args.require)
    except subprocess.CalledProcessError as exc:
        print(f"microlib: building the JupyterLab extension failed: {exc}", file=sys.stderr)
        return 1
    if args.develop:
        develop(Path(sys.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
