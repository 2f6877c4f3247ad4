"""Who serves where: the registration files in the Jupyter runtime directory.

Two kinds of small JSON files, written atomically with mode 0600 (the same folder
holds the kernels' connection files, which are as sensitive):

* ``microlib-host-<kernel_id>.json`` -- written by an in-kernel host when it starts
  serving, removed when it stops (:class:`HostRegistration`). The Jupyter server
  extension proxies to the URLs found here, and nowhere else.
* ``microlib-server-<pid>.json`` -- written by the Jupyter server extension when it
  loads (:class:`ServerRegistration`), so a kernel started by that server (its
  ``JPY_PARENT_PID``) knows it can print proxied URLs, and under which base URL.

A registration whose process is gone is stale: readers delete it. Only the standard
library and ``jupyter_core`` are imported here, so kernels can use this module without
loading the Jupyter server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("microlib_kernel.jupyter_server")

HOST_PREFIX = "microlib-host-"
SERVER_PREFIX = "microlib-server-"

#: A kernel id as Jupyter makes them (a UUID), or any name safe in a file name and a URL.
KERNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: The environment variable a host reads its deploy token from (DESIGN.md §7).
TOKEN_ENV = "MICROLIB_DEPLOY_TOKEN"


def runtime_dir() -> Path:
    """The Jupyter runtime directory (``JUPYTER_RUNTIME_DIR`` or the platform's)."""
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def valid_kernel_id(kernel_id: str) -> bool:
    """Whether ``kernel_id`` can name a registration (no path separators, not empty)."""
    return bool(KERNEL_ID.fullmatch(kernel_id)) and ".." not in kernel_id


def kernel_id_from_connection_file(path: str | os.PathLike[str]) -> str | None:
    """``.../kernel-<id>.json`` -> ``<id>`` (the id Jupyter knows the kernel by)."""
    name = Path(path).name
    if not (name.startswith("kernel-") and name.endswith(".json")):
        return None
    kernel_id = name[len("kernel-") : -len(".json")]
    return kernel_id if valid_kernel_id(kernel_id) else None


def current_kernel_id() -> str | None:
    """The id of the kernel this code runs in, or ``None`` outside a kernel."""
    try:
        from ipykernel.connect import get_connection_file
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return None
    try:
        return kernel_id_from_connection_file(get_connection_file())
    except (RuntimeError, AttributeError, TypeError):  # not in a kernel application
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(data, indent=1).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class HostRegistration:
    """An in-kernel host that serves, as the Jupyter server finds it.

    Attributes:
        kernel_id: the Jupyter kernel id (from the kernel's connection file name).
        url: the host's base URL (``http://127.0.0.1:8707``).
        api_root: the path of its API (``/microlib/api``).
        pid: the kernel's process id (a dead one makes the registration stale).
        token_file: the file holding the host's deploy token, when it comes from one.
        token_env: the environment variable holding it, when it comes from the
            environment (the server reads its own: kernels inherit the server's).
        cwd: the folder the host resolves its datasource in.
        started: when the host started serving (ISO 8601).
        version: the microlib-kernel version of the host.
        auth: the host has API auth on: the proxy then sends the deploy token (which
            such a host accepts on every route) unless the browser sent its own token.
    """

    kernel_id: str
    url: str
    api_root: str
    pid: int
    token_file: str | None = None
    token_env: str | None = None
    cwd: str = ""
    started: str = ""
    version: str = ""
    auth: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HostRegistration | None:
        """Parse a registration; ``None`` if it is not one (wrong types, bad id or URL)."""
        try:
            reg = cls(
                kernel_id=str(data["kernel_id"]),
                url=str(data["url"]).rstrip("/"),
                api_root="/" + str(data.get("api_root") or "").strip("/"),
                pid=int(data["pid"]),
                token_file=_opt_str(data.get("token_file")),
                token_env=_opt_str(data.get("token_env")),
                cwd=str(data.get("cwd") or ""),
                started=str(data.get("started") or ""),
                version=str(data.get("version") or ""),
                auth=data.get("auth") is True,
            )
        except (KeyError, TypeError, ValueError):
            return None
        if not valid_kernel_id(reg.kernel_id) or not re.fullmatch(r"http://[^/?#@\s]+", reg.url):
            return None
        return reg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def api_url(self) -> str:
        return f"{self.url}{self.api_root}".rstrip("/")

    def deploy_token(self, env: Mapping[str, str] | None = None) -> str | None:
        """The host's deploy token, read where the registration says it is.

        Args:
            env: the environment to read ``token_env`` from (default: this process's).

        Returns:
            The token, or ``None`` when it cannot be read here.
        """
        env = os.environ if env is None else env
        if self.token_env:
            value = env.get(self.token_env, "").strip()
            if value:
                return value
        if self.token_file:
            try:
                value = Path(self.token_file).read_text(encoding="utf-8").strip()
            except OSError:
                return None
            return value or None
        return None


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def host_path(kernel_id: str, directory: Path | None = None) -> Path:
    if not valid_kernel_id(kernel_id):
        raise ValueError(f"not a kernel id: {kernel_id!r}")
    return (directory or runtime_dir()) / f"{HOST_PREFIX}{kernel_id}.json"


def register_host(reg: HostRegistration, directory: Path | None = None) -> Path:
    """Write ``reg`` (replacing an earlier registration of the same kernel)."""
    path = host_path(reg.kernel_id, directory)
    _write_json(path, reg.to_dict())
    return path


def unregister_host(reg: HostRegistration, directory: Path | None = None) -> bool:
    """Remove ``reg`` if the file still holds it (not a newer host of the same kernel)."""
    path = host_path(reg.kernel_id, directory)
    found = _read_json(path)
    if found is None or HostRegistration.from_dict(found) != reg:
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return True


def _registrations(directory: Path, prefix: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    try:
        paths = sorted(directory.glob(f"{prefix}*.json"))
    except OSError:
        return
    for path in paths:
        data = _read_json(path)
        if data is not None:
            yield path, data


def _drop_stale(path: Path, what: str, pid: int) -> None:
    log.info("removing the stale %s registration %s (process %d is gone)", what, path.name, pid)
    with contextlib.suppress(OSError):
        path.unlink()


def live_hosts(directory: Path | None = None) -> list[HostRegistration]:
    """Every registered host whose kernel process is alive; stale files are deleted.

    Files that do not parse are skipped (and kept: they may be of another version).
    """
    directory = directory or runtime_dir()
    hosts = []
    for path, data in _registrations(directory, HOST_PREFIX):
        reg = HostRegistration.from_dict(data)
        if reg is None or path.name != f"{HOST_PREFIX}{reg.kernel_id}.json":
            continue
        if not pid_alive(reg.pid):
            _drop_stale(path, "host", reg.pid)
            continue
        hosts.append(reg)
    return hosts


def find_host(kernel_id: str, directory: Path | None = None) -> HostRegistration | None:
    """The live registration of ``kernel_id``, or ``None`` (a stale one is deleted)."""
    if not valid_kernel_id(kernel_id):
        return None
    path = host_path(kernel_id, directory)
    data = _read_json(path)
    reg = HostRegistration.from_dict(data) if data is not None else None
    if reg is None or reg.kernel_id != kernel_id:
        return None
    if not pid_alive(reg.pid):
        _drop_stale(path, "host", reg.pid)
        return None
    return reg


@dataclass(frozen=True)
class ServerRegistration:
    """A Jupyter server running the microlib server extension.

    Attributes:
        pid: the server's process id (kernels see it as ``JPY_PARENT_PID``).
        base_url: the server's base URL path (``/`` or ``/user/alice/``), which the
            browser also uses, so links made from it work behind JupyterHub.
        url: the server's own URL (for messages; a proxy in front may change it).
    """

    pid: int
    base_url: str
    url: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerRegistration | None:
        try:
            base = str(data["base_url"]).strip("/")
            return cls(int(data["pid"]), f"/{base}/" if base else "/", str(data.get("url") or ""))
        except (KeyError, TypeError, ValueError):
            return None

    def proxy_path(self, kernel_id: str) -> str:
        """The path the browser reaches a kernel's host under (``/microlib/proxy/<id>``)."""
        return f"{self.base_url}microlib/proxy/{kernel_id}"


def server_path(pid: int, directory: Path | None = None) -> Path:
    return (directory or runtime_dir()) / f"{SERVER_PREFIX}{int(pid)}.json"


def register_server(reg: ServerRegistration, directory: Path | None = None) -> Path:
    path = server_path(reg.pid, directory)
    _write_json(path, asdict(reg))
    return path


def unregister_server(pid: int, directory: Path | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        server_path(pid, directory).unlink()


def find_server(pid: int, directory: Path | None = None) -> ServerRegistration | None:
    """The live server registration of process ``pid`` (a stale one is deleted)."""
    if pid <= 0:
        return None
    path = server_path(pid, directory)
    data = _read_json(path)
    reg = ServerRegistration.from_dict(data) if data is not None else None
    if reg is None or reg.pid != pid:
        return None
    if not pid_alive(pid):
        _drop_stale(path, "server", pid)
        return None
    return reg


def parent_server(
    env: Mapping[str, str] | None = None, directory: Path | None = None
) -> ServerRegistration | None:
    """The Jupyter server with the microlib extension that started this kernel, if any.

    jupyter_client sets ``JPY_PARENT_PID`` to the server's process id in the kernels
    it launches; without it the parent process is tried.
    """
    env = os.environ if env is None else env
    candidates = []
    with contextlib.suppress(ValueError):
        candidates.append(int(env.get("JPY_PARENT_PID", "")))
    candidates.append(os.getppid())
    for pid in dict.fromkeys(candidates):
        found = find_server(pid, directory)
        if found is not None:
            return found
    return None
