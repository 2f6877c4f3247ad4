"""The registration files in the Jupyter runtime directory: written, read, cleaned up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from microlib_kernel.jupyter_server import registry
from microlib_kernel.jupyter_server.registry import HostRegistration, ServerRegistration

HOST = "http://127.0.0.1:8707"


@pytest.fixture
def rt(tmp_path: Path) -> Path:
    """A runtime folder of its own (the test's folder also holds the conftest's)."""
    folder = tmp_path / "runtime"
    folder.mkdir()
    return folder


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    if registry.pid_alive(proc.pid):
        pytest.skip("the pid of an exited process is in use again")
    return proc.pid


def test_a_registration_round_trips_readable_by_its_owner_only(rt: Path) -> None:
    reg = HostRegistration("k1", HOST, "/microlib/api", os.getpid(), token_file="/t")
    path = registry.register_host(reg, rt)
    assert path == rt / "microlib-host-k1.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert registry.live_hosts(rt) == [reg]
    assert registry.find_host("k1", rt) == reg
    assert [p.name for p in rt.iterdir()] == [path.name]  # no temporary file left


def test_the_default_folder_is_jupyters_runtime_dir(tmp_path: Path) -> None:
    # The conftest points JUPYTER_RUNTIME_DIR into the test's folder.
    assert registry.runtime_dir() == Path(os.environ["JUPYTER_RUNTIME_DIR"])
    reg = HostRegistration("k2", HOST, "/microlib/api", os.getpid())
    registry.register_host(reg)
    assert registry.find_host("k2") == reg


def test_stale_registrations_are_deleted_by_readers(rt: Path) -> None:
    dead = exited_pid()
    registry.register_host(HostRegistration("gone", HOST, "/api", dead), rt)
    registry.register_host(HostRegistration("gone2", HOST, "/api", dead), rt)
    alive = HostRegistration("here", HOST, "/api", os.getpid())
    registry.register_host(alive, rt)

    assert registry.find_host("gone", rt) is None
    assert not (rt / "microlib-host-gone.json").exists()
    assert registry.live_hosts(rt) == [alive]
    assert not (rt / "microlib-host-gone2.json").exists()


def test_unreadable_or_foreign_files_are_skipped_and_kept(rt: Path) -> None:
    (rt / "microlib-host-bad.json").write_text("{not json")
    (rt / "microlib-host-list.json").write_text("[1, 2]")
    (rt / "microlib-host-other.json").write_text(
        json.dumps({"kernel_id": "mismatch", "url": HOST, "api_root": "/", "pid": os.getpid()})
    )
    assert registry.live_hosts(rt) == []
    assert registry.find_host("other", rt) is None
    assert len(list(rt.iterdir())) == 3
    assert registry.find_host("../etc", rt) is None
    assert registry.live_hosts(rt / "missing") == []


def test_unregister_removes_only_its_own_registration(rt: Path) -> None:
    old = HostRegistration("k", HOST, "/api", os.getpid())
    new = HostRegistration("k", "http://127.0.0.1:9999", "/api", os.getpid())
    registry.register_host(old, rt)
    registry.register_host(new, rt)  # the kernel's host restarted (%reload_ext)
    assert registry.unregister_host(old, rt) is False
    assert registry.find_host("k", rt) == new
    assert registry.unregister_host(new, rt) is True
    assert registry.find_host("k", rt) is None
    assert registry.unregister_host(new, rt) is False  # idempotent


def test_a_kernel_finds_the_server_that_started_it(rt: Path) -> None:
    server = ServerRegistration(os.getppid(), "/user/a/", "http://lab/user/a/")
    registry.register_server(server, rt)
    assert registry.parent_server({}, rt) == server  # by the parent process
    assert registry.parent_server({"JPY_PARENT_PID": "1"}, rt) == server
    other = ServerRegistration(os.getpid(), "/")
    registry.register_server(other, rt)
    assert registry.parent_server({"JPY_PARENT_PID": str(os.getpid())}, rt) == other
    registry.unregister_server(os.getppid(), rt)
    registry.unregister_server(os.getpid(), rt)
    assert registry.parent_server({"JPY_PARENT_PID": "junk"}, rt) is None

    dead = exited_pid()
    registry.register_server(ServerRegistration(dead, "/"), rt)
    assert registry.parent_server({"JPY_PARENT_PID": str(dead)}, rt) is None
    assert not (rt / f"microlib-server-{dead}.json").exists()


def test_the_deploy_token_is_read_where_the_registration_says(rt: Path) -> None:
    token = rt / "deploy-token"
    token.write_text("from-file\n")
    reg = HostRegistration("k", HOST, "/microlib/api", 1, token_file=str(token))
    assert reg.deploy_token({}) == "from-file"
    env_reg = HostRegistration("k", HOST, "/microlib/api", 1, token_env="MICROLIB_DEPLOY_TOKEN")
    assert env_reg.deploy_token({"MICROLIB_DEPLOY_TOKEN": "from-env"}) == "from-env"
    assert env_reg.deploy_token({}) is None
    missing = HostRegistration("k", HOST, "/microlib/api", 1, token_file=str(rt / "nope"))
    assert missing.deploy_token({}) is None


def test_outside_a_kernel_there_is_no_kernel_id() -> None:
    assert registry.current_kernel_id() is None
