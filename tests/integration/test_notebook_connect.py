"""``%microlib connect``: notebook cells published to a host in another process (over HTTP).

The remote host serves on 127.0.0.1 from its own folder (its deploy token is there);
the notebook runs in an IPython shell, and in one test in a real kernel started with
``MICROLIB_TARGET_URL`` (how ``microlib deploy`` runs notebooks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel.notebook.extension import session_of
from microlib_kernel.notebook.remote import RemoteTarget
from tests.deploy_support import DeployHost, open_deploy_host
from tests.integration.test_notebook_shell import ORDER, ok, plain, run, usage_error
from tests.notebook_support import Kernel, fresh_shell

ORDER_V2 = ORDER + '    note: str = "-"\n'


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[DeployHost]:
    folder = tmp_path / "remote"
    folder.mkdir()
    d = open_deploy_host(folder)
    yield d
    d.host.close()


@pytest.fixture
def ip() -> Iterator[Any]:
    with fresh_shell() as shell:
        yield shell


def local_models(ip: Any) -> list[str]:
    session = session_of(ip)
    assert session is not None
    return [e.name for e in session.host.registry.entries()]


def connect(ip: Any, remote: DeployHost) -> None:
    ok(ip, f"%microlib connect {remote.url} --token {remote.token}")


def test_connect_checks_the_host_and_the_token(
    ip: Any, remote: DeployHost, capsys: pytest.CaptureFixture[str]
) -> None:
    message = usage_error(ip, f"%microlib connect {remote.url}", capsys)
    assert "refused the deploy token (no token: give --token" in message
    message = usage_error(ip, f"%microlib connect {remote.url} --token nope", capsys)
    assert "refused the deploy token: wrong deploy token" in message
    message = usage_error(ip, "%microlib connect http://127.0.0.1:9", capsys)
    assert "no host answers at http://127.0.0.1:9" in message
    session = session_of(ip)
    assert session is not None and session.target is session.local
    capsys.readouterr()
    shown = ok(ip, f"%microlib connect {remote.url} --token {remote.token}").result
    assert f"connected to {remote.api}" in repr(shown)
    assert isinstance(session.target, RemoteTarget) and session.target.url == remote.url


def test_cells_publish_to_the_remote_host_only(
    ip: Any, remote: DeployHost, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, remote)
    capsys.readouterr()
    ok(ip, ORDER)
    out = capsys.readouterr().out
    assert f"published Order 1.0.0 at {remote.api}/models/orders" in out
    assert f"deployed to {remote.url}" in out
    assert local_models(ip) == []  # validated here, published there
    assert remote.host.registry.get("Order").active == "1.0.0"
    assert ip.user_ns["Order"].__name__ == "Order"  # the notebook has the class
    ok(ip, ORDER_V2)
    assert remote.host.registry.get("Order").active == "1.0.1"
    log = remote.host.deployments
    assert [d.who for d in log] == ["http 127.0.0.1", "http 127.0.0.1"]

    # a cell that raises here sends nothing
    message = usage_error(ip, ORDER + "raise RuntimeError('typo')\n", capsys)
    assert message == (
        f"nothing published: the cell raised RuntimeError; Order 1.0.1 keeps serving on "
        f"{remote.url}"
    )
    # a cell that works here but not there (it uses a notebook name) is refused there
    ok(ip, "DEFAULT_NOTE = 'x'")
    before = ip.user_ns["Order"]
    message = usage_error(ip, ORDER + "    note: str = DEFAULT_NOTE\n", capsys)
    assert "nothing published: model source raised line 8: NameError" in message
    assert message.endswith(f"Order 1.0.1 keeps serving on {remote.url}")
    assert ip.user_ns["Order"] is before  # the notebook's name is given back
    with httpx.Client(base_url=remote.api) as api:
        api.post("/models/orders", json={"items": [{"sku": "a"}]}).raise_for_status()
    # a schema change the remote rows refuse: the line of the class
    message = usage_error(ip, ORDER + "    customer: str\n", capsys)
    assert "adds required field 'customer'" in message and "(line 4 of the cell)" in message
    assert list(remote.host.registry.get("Order").versions) == ["1.0.0", "1.0.1"]


def test_line_magics_act_on_the_remote_host(
    ip: Any, remote: DeployHost, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, remote)
    ok(ip, ORDER)
    ok(ip, ORDER_V2)
    with httpx.Client(base_url=remote.api) as api:
        for total in (1.0, 5.0, 9.0):
            api.post("/models/orders", json={"items": [{}], "total": total}).raise_for_status()
    status = repr(ok(ip, "%microlib status").result)
    assert f"microlib remote host · API {remote.api}" in status
    assert re.search(r"Order\s+1\.0\.1\s+3\s+/orders", status), status
    models = plain(repr(ok(ip, "%microlib models").result))
    assert re.search(r"Order\s+1\.0\.1\s+1\.0\.0, 1\.0\.1\s+1\.0\.1=100\s+2", models), models
    assert "Order 1.0.0 is active" in repr(ok(ip, "%microlib rollback order").result)
    assert remote.host.registry.get("Order").active == "1.0.0"
    routed = repr(ok(ip, "%microlib route Order 1.0.0=90 1.0.1=10").result)
    assert "1.0.0=90, 1.0.1=10" in routed
    assert remote.host.registry.get("Order").routes == {"1.0.0": 90.0, "1.0.1": 10.0}
    ok(ip, "low = 4")
    ok(ip, "%%microlib sql -o big\nSELECT count(*) AS n FROM orders WHERE total > $low")
    assert ip.user_ns["big"].rows == [(2,)]
    message = usage_error(ip, "%%microlib sql\nDELETE FROM orders", capsys)
    assert "read-only" in message or "only" in message
    unpublished = repr(ok(ip, "%microlib unpublish Order").result)
    assert "Order unpublished: /orders answers 404" in unpublished
    assert remote.host.registry.get("Order").published is False
    message = usage_error(ip, "%microlib rollback Nothing", capsys)
    assert "no model named 'Nothing'" in message
    assert [d.kind for d in remote.host.deployments][-3:] == ["rollback", "route", "unpublish"]


def test_adapter_service_and_module_cells_go_to_the_remote_host(
    ip: Any, remote: DeployHost, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, remote)
    capsys.readouterr()
    ok(ip, "%%microlib module shared\ndef twice(x):\n    return 2 * x\n")
    ok(ip, "%%microlib adapter audit\nasync def note(order):\n    return {'note_id': 'remote'}\n")
    ok(ip, "%%microlib service clock\nclass Clock:\n    pass\nClock()\n")
    out = capsys.readouterr().out
    assert f"adapters deployed to {remote.url}: audit.note" in out
    assert f"service clock deployed to {remote.url}" in out
    assert "module microlib_modules.shared deployed to" in out
    ok(ip, "from microlib_modules.shared import twice\nassert twice(2) == 4")  # local too
    session = session_of(ip)
    assert session is not None
    assert session.host.adapters.find("audit.note") is None  # nothing registered here
    assert remote.host.adapters.find("audit.note") is not None
    assert type(remote.host.services.get("clock")).__name__ == "Clock"
    assert [(d.kind, d.names) for d in remote.host.deployments] == [
        ("module", ["shared"]),
        ("adapter", ["audit"]),
        ("service", ["clock"]),
    ]


def test_disconnect_publishes_here_again(
    ip: Any, remote: DeployHost, capsys: pytest.CaptureFixture[str]
) -> None:
    connect(ip, remote)
    assert "disconnected from" in repr(ok(ip, "%microlib disconnect").result)
    assert repr(ok(ip, "%microlib disconnect").result) == "not connected"
    ok(ip, ORDER)
    assert local_models(ip) == ["Order"]
    assert remote.host.registry.entries() == []


def test_target_url_connects_at_load_and_records_each_publish(
    tmp_path: Path,
    remote: DeployHost,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = tmp_path / "records" / "deploy.jsonl"
    monkeypatch.setenv("MICROLIB_TARGET_URL", remote.url)
    monkeypatch.setenv("MICROLIB_DEPLOY_TOKEN", remote.token)
    monkeypatch.setenv("MICROLIB_DEPLOY_RECORD", str(record))
    with fresh_shell() as shell:
        out = capsys.readouterr().out
        assert f"%%microlib cells publish to {remote.api} (MICROLIB_TARGET_URL)" in out
        session = session_of(shell)
        assert session is not None and session.host.datasource.describe().startswith("memory")
        ok(shell, ORDER)
        ok(shell, ORDER_V2)
        ok(shell, "%%microlib adapter audit\ndef note(order):\n    return None\n")
        run(shell, ORDER + "raise ValueError\n")  # fails: records nothing
    lines = [json.loads(x) for x in record.read_text().splitlines()]
    assert lines == [
        {
            "name": "Order",
            "version": "1.0.0",
            "endpoint": "orders",
            "kind": "model",
            "previous": None,
        },
        {
            "name": "Order",
            "version": "1.0.1",
            "endpoint": "orders",
            "kind": "model",
            "previous": {"active": "1.0.0", "routes": {"1.0.0": 100.0}},
        },
        {"name": "audit", "version": None, "endpoint": None, "kind": "adapter", "previous": None},
    ]


def test_an_unreachable_target_fails_cells_and_never_publishes_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MICROLIB_TARGET_URL", "http://127.0.0.1:9")
    with fresh_shell() as shell:
        err = capsys.readouterr().err
        assert "no host answers at http://127.0.0.1:9" in err and "will fail" in err
        message = usage_error(shell, ORDER, capsys)
        assert message.startswith("nothing published: no host answers at http://127.0.0.1:9")
        assert local_models(shell) == []


@pytest.mark.slow
@pytest.mark.kernel
def test_a_kernel_with_a_target_url_publishes_there(
    tmp_path: Path, remote: DeployHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROLIB_TARGET_URL", remote.url)
    monkeypatch.setenv("MICROLIB_DEPLOY_TOKEN", remote.token)
    kernel = Kernel(tmp_path)
    try:
        loaded = kernel.ok("%load_ext microlib_kernel")
        assert f"publish to {remote.api}" in loaded.text()
        published = kernel.ok(ORDER)
        assert f"published Order 1.0.0 at {remote.api}/models/orders" in published.text()
        failed = kernel.run(ORDER + "    colour: str = missing_name\n")
        assert failed.status == "error" and failed.ename == "UsageError"
    finally:
        kernel.close()
    assert remote.host.registry.get("Order").active == "1.0.0"
    assert not (tmp_path / ".microlib" / "microlib.duckdb").exists()  # nothing local on disk


def test_a_token_starting_with_a_dash(tmp_path: Path, ip: Any) -> None:
    d = open_deploy_host(tmp_path / "dash", deploy_token="-dash-token")
    try:
        ok(ip, f"%microlib connect {d.url} --token=-dash-token")
        ok(ip, ORDER)
        assert d.host.registry.get("Order").active == "1.0.0"
    finally:
        d.host.close()
