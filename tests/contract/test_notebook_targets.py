"""The notebook's Target contract: the in-kernel host (``LocalTarget``) and a host in
another process (``RemoteTarget``) pass the same tests.

The session and the magics never ask which target they hold, so both must answer
every operation alike: the same ``/config`` entries, the same errors for the same
mistakes, messages that name what was done. The in-kernel host is on ``memory://``
and serves on 127.0.0.1, port 0, from its first publish; the remote one is a real
host on a DuckDB file served over loopback (``tests/deploy_support.py``), as the
``%microlib connect`` tests use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from microlib_kernel.errors import MicrolibError
from microlib_kernel.notebook.displays import port_row
from microlib_kernel.notebook.local import LocalTarget
from microlib_kernel.notebook.remote import RemoteTarget
from microlib_kernel.notebook.serving import HostServing
from microlib_kernel.notebook.targets import Target
from tests.deploy_support import open_deploy_host

NOTE = """\
from microlib_kernel import Model, port

class Note(Model, endpoint="notes"):
    text: str = ""
    note_id: str | None = None
{extra}
    audit = port("audit.note", consumes="note.created")
"""


def note_source(extra: str = "") -> str:
    return NOTE.format(extra=f"    {extra}" if extra else "")


def cell(source: str) -> list[type[Any]]:
    """The model classes a model cell defines, run as the notebook runs it."""
    namespace: dict[str, Any] = {"__name__": "notebook_cell"}
    exec(compile(source, "<cell>", "exec"), namespace)
    return [namespace["Note"]]


@dataclass
class Case:
    """A target, and the host behind it (to look at what the target did there)."""

    target: Target
    host: Host


async def audit_note(note: Any) -> dict[str, Any]:
    return {"note_id": f"n-{note.id}"}  # what the remote host's audit.note answers


def local_case(folder: Path) -> Iterator[Case]:
    settings = Settings.load(cwd=folder, env={}, datasource="memory://", port=0)
    host = Host(settings=settings)
    host.adapters.register("audit.note", audit_note)
    target = LocalTarget(host, HostServing(host))
    try:
        yield Case(target, host)
    finally:
        target.close()


def remote_case(folder: Path) -> Iterator[Case]:
    served = open_deploy_host(folder)
    try:
        target = RemoteTarget.connect(served.url, served.token, env={})
        try:
            yield Case(target, served.host)
        finally:
            target.close()
    finally:
        served.host.close()


@pytest.fixture(params=["local", "remote"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    make = local_case if request.param == "local" else remote_case
    yield from make(tmp_path)


def publish(target: Target, extra: str = "", version: str | None = None) -> list[Any]:
    source = note_source(extra)
    return target.publish_models(cell(source), source, version)


def test_both_have_the_target_shape(case: Case) -> None:
    assert isinstance(case.target, Target)


def test_a_model_cell_publishes_and_shows_its_endpoint(case: Case) -> None:
    target = case.target
    source = note_source()
    classes = cell(source)
    published = target.publish_models(classes, source, None)
    assert [(p.name, p.version, p.endpoint) for p in published] == [("Note", "1.0.0", "notes")]
    assert case.host.registry.get("Note").active == "1.0.0"
    shown = target.published_display(published, classes)
    assert target.api_url is not None  # the in-kernel host serves from its first publish
    url = target.endpoint_url("notes")
    assert url == f"{target.api_url}/models/notes"
    assert shown.docs_url == f"{target.api_url}/openapi.json"
    assert [(m.name, m.version, m.url) for m in shown.models] == [("Note", "1.0.0", url)]
    assert [f.name for f in shown.models[0].fields] == ["text", "note_id"]
    assert target.api_url in target.status_title()


def test_models_count_rows_and_sql_reads_them(case: Case) -> None:
    target = case.target
    target.published_display(publish(target), [])
    url = target.endpoint_url("notes")
    assert url is not None
    with httpx.Client() as client:
        for text in ("a", "b", "b"):
            client.post(url, json={"text": text}).raise_for_status()
    [entry] = target.models()
    assert (entry["name"], entry["active"], entry["endpoint"]) == ("Note", "1.0.0", "notes")
    assert entry["count"] == 3 and entry["versions"] == ["1.0.0"]
    result = target.sql("SELECT count(*) AS n FROM notes WHERE text = $t", {"t": "b"})
    assert result.rows == [(2,)]
    with pytest.raises(MicrolibError, match="only read-only queries are allowed"):
        target.sql("DELETE FROM notes", None)
    [row] = target.ports_report()
    assert port_row(row)[:3] == ["Note", "audit", "audit.note"]


def test_versions_are_rolled_back_routed_and_unpublished(case: Case) -> None:
    target = case.target
    publish(target)
    publish(target, 'tag: str = "-"')
    assert target.keeps_serving(["Note", "Other"]).startswith("Note 1.0.1 keeps serving")
    entry = target.rollback("note", None)
    assert (entry["name"], entry["active"]) == ("Note", "1.0.0")
    entry = target.route("Note", {"1.0.0": 90, "1.0.1": 10})
    assert entry["routes"] == {"1.0.0": 90.0, "1.0.1": 10.0}
    assert case.host.registry.get("Note").routes == {"1.0.0": 90.0, "1.0.1": 10.0}
    entry = target.unpublish("Note")
    assert (entry["name"], entry["endpoint"], entry["published"]) == ("Note", "notes", False)
    assert target.keeps_serving(["Note"]) == ""
    assert target.models() == []


def test_mistakes_are_refused_alike(case: Case) -> None:
    target = case.target
    with pytest.raises(MicrolibError, match="no model named 'Nothing'"):
        target.rollback("Nothing", None)
    with pytest.raises(MicrolibError, match="no model named 'Nothing'"):
        target.unpublish("Nothing")
    publish(target)
    case.host.loop.run(case.host.model("Note").create(text="x"))
    # A required field the stored rows do not have: refused, the old version keeps serving.
    with pytest.raises(MicrolibError, match="adds required field 'colour'"):
        publish(target, "colour: str")
    assert target.keeps_serving(["Note"]).startswith("Note 1.0.0 keeps serving")
    assert list(case.host.registry.get("Note").versions) == ["1.0.0"]


def test_adapter_service_and_module_cells(case: Case) -> None:
    target = case.target
    adapter_source = "async def stamp(note):\n    return {'text': 'stamped'}\n"
    adapters: dict[str, Any] = {}
    exec(adapter_source, adapters)
    said = target.publish_adapters("audit", {"stamp": adapters["stamp"]}, adapter_source)
    assert "adapters" in said and "audit.stamp" in said
    assert case.host.adapters.find("audit.stamp") is not None

    service_source = "class Clock:\n    pass\nClock()\n"
    clock = type("Clock", (), {})()
    said = target.publish_service("clock", clock, service_source)
    assert said.startswith("service clock ")
    assert type(case.host.services.get("clock")).__name__ == "Clock"

    said = target.publish_module("shared", "def twice(x):\n    return 2 * x\n")
    assert said.startswith("module microlib_modules.shared ") and "(also bound as shared)" in said
    assert [d.kind for d in case.host.deployments] == ["adapter", "service", "module"]


def test_close_is_idempotent(case: Case) -> None:
    case.target.close()
    case.target.close()
