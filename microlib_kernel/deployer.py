"""Notebooks as deployments: run a notebook with papermill against a host, atomically.

The notebook runs in a fresh kernel (papermill, in a subprocess) whose
``microlib_kernel`` extension is *connected* to the target host: the target URL and the
deploy token reach the kernel through its environment (``MICROLIB_TARGET_URL``,
``MICROLIB_DEPLOY_TOKEN``), so every ``%%microlib`` cell is streamed to the host with
``POST /deploy``. The extension appends one JSON line per publish to the file named by
``MICROLIB_DEPLOY_RECORD``, with what the model's routes were just before; if any cell
fails, every model the run published is put back exactly as it was (its earlier routes,
or unpublished if it is new), and the deployment reports the failing cell.

The executed notebook is kept as the deployment record under
``.microlib/deployments/`` with who, when, the parameters and what was published.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeployRefused, MicrolibError

#: The parameter every deployed notebook receives: the target host's base URL.
URL_PARAMETER = "microlib_url"
KERNEL_NAME = "microlib-deploy"


@dataclass
class DeployResult:
    """What a notebook deployment did."""

    notebook: str
    output: str
    target: str
    ok: bool
    published: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    error: str | None = None
    failed_cell: int | None = None  # 1-based, counting the notebook's own cells
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for a terminal."""
        if self.ok:
            what = ", ".join(
                f"{p['name']} {p['version']}" if p.get("version") else f"{p['kind']} {p['name']}"
                for p in self.published
            )
            took = f"{self.seconds:.1f} s"
            return f"deployed {self.notebook} to {self.target} in {took}: {what or 'nothing'}"
        where = f"cell {self.failed_cell}" if self.failed_cell is not None else "the run"
        back = f"; rolled back {', '.join(self.restored)}" if self.restored else ""
        return f"deployment of {self.notebook} failed at {where}: {self.error}{back}"


def who() -> str:
    """``user@machine`` for the deployment log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def deploy_notebook(
    notebook: str | os.PathLike[str],
    *,
    target: str,
    token: str,
    parameters: Mapping[str, Any] | None = None,
    output: str | os.PathLike[str] | None = None,
    home: str | os.PathLike[str] = ".microlib",
    progress: bool = True,
    timeout: float | None = None,
    kernel_timeout: float = 60.0,
    api_root: str = "/microlib/api",
    wait_for_target: float = 0.0,
    cancel: threading.Event | None = None,
    cafile: str | os.PathLike[str] | None = None,
    api_token: str | None = None,
) -> DeployResult:
    """Run ``notebook`` with papermill so that it deploys into the host at ``target``.

    Args:
        notebook: the ``.ipynb`` to run.
        target: the host's base URL (``http://127.0.0.1:8707``).
        token: the host's deploy token.
        parameters: papermill parameters (``microlib_url`` is added: the target URL).
        output: where to keep the executed notebook (default:
            ``HOME/deployments/<UTC time>-<name>.ipynb``).
        home: the ``.microlib`` folder for deployment records.
        progress: show papermill's progress bar (cell n of m) on stderr.
        timeout: seconds for the whole run (``None``: no limit).
        kernel_timeout: seconds papermill waits for the kernel to start.
        api_root: the host's API root (for restoring routes after a failure).
        wait_for_target: seconds the kernel waits for a host that is still starting.
        cancel: set it to stop the run (the papermill process is killed).
        cafile: CA bundle that signed an ``https`` target's certificate (the kernel and
            the restore both verify with it; default ``MICROLIB_CAFILE``).
        api_token: the API bearer token for a target with auth on, given to the
            notebook as ``MICROLIB_TOKEN`` (default: ``MICROLIB_TOKEN``, else the deploy
            token).

    Returns:
        A :class:`DeployResult`; ``ok`` is false when a cell failed (and then every
        model the run published was restored).

    Raises:
        MicrolibError: the notebook does not exist or papermill cannot run at all.
    """
    source = Path(notebook)
    if not source.is_file():
        raise MicrolibError(f"no notebook at {source}")
    started = dt.datetime.now(dt.UTC)
    out = Path(output) if output else _record_path(Path(home), source, started)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {URL_PARAMETER: target, **dict(parameters or {})}
    if target.startswith("https://") and not wait_for_target:
        check_tls(target, cafile)
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="microlib-deploy-") as tmp:
        record = Path(tmp) / "published.jsonl"
        env = _kernel_env(Path(tmp), target, token, record)
        env["MICROLIB_TARGET_WAIT"] = str(wait_for_target)
        if cafile:
            env["MICROLIB_CAFILE"] = str(Path(cafile).resolve())
        # The notebook's own API calls (HostClient) carry this token; a host with auth
        # on also accepts the deploy token there.
        env["MICROLIB_TOKEN"] = api_token or os.environ.get("MICROLIB_TOKEN") or token
        cmd = [
            sys.executable, "-m", "microlib_kernel.papermill_runner", str(source), str(out),
            KERNEL_NAME, json.dumps(params), str(source.parent.resolve()),
            str(int(kernel_timeout)), "1" if progress else "0",
        ]  # fmt: skip
        code, stderr = _run(cmd, env, timeout, progress, cancel)
        published = _read_record(record)
    result = DeployResult(str(source), str(out), target, ok=code == 0, published=published)
    if not result.ok:
        cell, error = _failure(out, stderr)
        result.failed_cell, result.error = cell, error
        verify = str(Path(cafile).resolve()) if cafile else None
        result.restored = restore(target, token, published, api_root=api_root, verify=verify)
    result.seconds = time.perf_counter() - begin
    _annotate(out, result, params, started)
    return result


def _run(
    cmd: list[str],
    env: dict[str, str],
    timeout: float | None,
    progress: bool,
    cancel: threading.Event | None,
) -> tuple[int, str]:
    """Run papermill; returns its exit code and stderr. Killed (by PID, with its
    kernel) when ``timeout`` passes or ``cancel`` is set."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip
    deadline = None if timeout is None else time.monotonic() + timeout
    why = ""
    while True:
        try:
            _, stderr = proc.communicate(timeout=0.1)
            return proc.returncode, stderr or ""
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            why = "the deployment was cancelled"
        elif deadline is not None and time.monotonic() > deadline:
            why = f"the notebook did not finish within {timeout} s"
        if why:
            # The kernel is papermill's child, in the same (new) session: end both.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return -1, why


def _record_path(home: Path, source: Path, started: dt.datetime) -> Path:
    return home / "deployments" / f"{started:%Y%m%dT%H%M%S}-{source.stem}.ipynb"


def check_tls(target: str, cafile: str | os.PathLike[str] | None) -> None:
    """Refuse at once a target whose certificate this process would not trust (the
    notebook's kernel would fail on its first cell with a less clear message).

    Raises:
        ServiceUnavailable: the certificate is not trusted (other failures are left to
            the run, which reports them as before).
    """
    from .client import HostClient
    from .errors import ServiceUnavailable

    verify = str(Path(cafile).resolve()) if cafile else None
    with HostClient(target, verify=verify, timeout=10) as client:
        try:
            client.health()
        except ServiceUnavailable as exc:
            if "not trusted" in exc.message:
                raise
        except MicrolibError:
            pass


def _kernel_env(tmp: Path, target: str, token: str, record: Path) -> dict[str, str]:
    """The papermill process's environment: a kernel spec that loads the extension,
    and what the extension needs to publish to the target."""
    from .notebook.kernelspec import kernel_json

    spec = tmp / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    spec_json = kernel_json(display_name="MicroLib deployment")
    # The kernel's "running over TCP without encryption" warning is noise on loopback.
    spec_json["argv"].append("--IPKernelApp.log_level=ERROR")
    (spec / "kernel.json").write_text(json.dumps(spec_json), encoding="utf-8")
    env = dict(os.environ)
    paths = [str(tmp), *filter(None, env.get("JUPYTER_PATH", "").split(os.pathsep))]
    env.update(
        JUPYTER_PATH=os.pathsep.join(paths),
        MICROLIB_TARGET_URL=target,
        MICROLIB_DEPLOY_TOKEN=token,
        MICROLIB_DEPLOY_RECORD=str(record),
        MICROLIB_SERVE="0",  # the kernel publishes to the target, it serves nothing
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


def _read_record(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a killed kernel: nothing was acknowledged for it
    return out


_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


def _failure(output: Path, stderr: str) -> tuple[int | None, str]:
    """The failing cell (its 1-based number in the notebook as written) and its error."""
    nb = _read_notebook(output)
    if nb is None:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        return None, lines[-1] if lines else "papermill failed"
    number = 0
    for cell in nb.get("cells", []):
        if _PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue  # cells papermill added: not the author's numbering
        number += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return number, f"{out.get('ename')}: {out.get('evalue')}"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return None, lines[-1] if lines else "the notebook did not run to the end"


def restore(
    target: str,
    token: str,
    published: list[dict[str, Any]],
    *,
    api_root: str = "/microlib/api",
    verify: Any = None,
) -> list[str]:
    """Put every model a failed run published back as it was before the run.

    Models are restored to their routes before the run's *first* publish of them
    (a run may publish a model twice); models that did not exist are unpublished.
    Adapters, services and modules are not versioned and stay as deployed.

    Returns:
        The names of the models restored.
    """
    import httpx

    from .client import error_from_response, tls_verify

    first: dict[str, dict[str, Any]] = {}
    for entry in published:
        if entry.get("version") is None or entry.get("name") is None:
            continue
        first.setdefault(str(entry["name"]).lower(), entry)
    restored = []
    headers = {"Authorization": f"Bearer {token}"}
    root = api_root.rstrip("/")
    with httpx.Client(
        base_url=target, headers=headers, timeout=30, verify=tls_verify(verify)
    ) as client:
        for entry in first.values():
            previous = entry.get("previous")
            name = entry["name"]
            if previous and previous.get("routes"):
                response = client.put(
                    f"{root}/deploy/{name}/routes", json={"weights": previous["routes"]}
                )
            else:
                response = client.delete(f"{root}/deploy/{name}")
            if response.status_code >= 400:
                raise error_from_response(response)
            restored.append(f"{name} → {_describe(previous)}")
    return restored


def _describe(previous: dict[str, Any] | None) -> str:
    if not previous or not previous.get("routes"):
        return "unpublished"
    routes = previous["routes"]
    if len(routes) == 1:
        return str(next(iter(routes)))
    return ", ".join(f"{v}={w:g}" for v, w in routes.items())


def _annotate(
    output: Path, result: DeployResult, params: dict[str, Any], started: dt.datetime
) -> None:
    """Write who, when, parameters and outcome into the executed notebook's metadata."""
    nb = _read_notebook(output)
    if nb is None:
        return  # papermill wrote nothing (it could not start): the result says why
    nb.setdefault("metadata", {})["microlib"] = {
        "who": who(),
        "time": started.isoformat(),
        "target": result.target,
        "parameters": {k: v for k, v in params.items()},
        "ok": result.ok,
        "published": result.published,
        "restored": result.restored,
        "error": result.error,
        "failed_cell": result.failed_cell,
        "seconds": round(result.seconds, 3),
    }
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, output)


def _read_notebook(path: Path) -> dict[str, Any] | None:
    """An ``.ipynb`` as plain JSON. Not through nbformat: importing it costs this process
    over a second (jsonschema's eager ``rfc3987_syntax`` import), for a file we only
    read a few keys of."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return nb if isinstance(nb, dict) else None


def check_deployable(result: DeployResult) -> None:
    """Raise :class:`DeployRefused` for a failed deployment (for callers that prefer errors)."""
    if not result.ok:
        raise DeployRefused(result.summary(), cell=result.failed_cell, restored=result.restored)
