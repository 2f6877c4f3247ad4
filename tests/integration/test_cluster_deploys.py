"""Deploys across hosts sharing a PostgreSQL deployment log, announced on a bus."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from microlib_kernel import Host
from microlib_kernel.config import Settings
from tests.pg_support import temporary_database
from tests.services import wait_until

SOURCE = """
from microlib_kernel import Model

class Ticket(Model, endpoint="tickets"):
    title: str
{extra}
"""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    with temporary_database() as url:
        bus = f"memory://{uuid.uuid4().hex}"
        hosts = [
            Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url, bus=bus, node=n))
            for n in ("a", "b")
        ]
        try:
            yield hosts[0], hosts[1]
        finally:
            for host in hosts:
                host.close()


def _active(host: Host) -> str | None:
    entry = host.registry.find("Ticket")
    return entry.active if entry is not None else None


def test_a_deploy_rollback_and_route_reach_the_other_host(pair: tuple[Host, Host]) -> None:
    a, b = pair
    a.publish(SOURCE.format(extra=""))
    wait_until(lambda: _active(b) == "1.0.0", 5, "b serving Ticket 1.0.0")
    # b numbers its next version after a's: one sequence for the cluster.
    b.publish(SOURCE.format(extra="    done: bool = False"))
    wait_until(lambda: _active(a) == "1.0.1", 5, "a serving Ticket 1.0.1")
    assert "done" in a.model("Ticket").model_fields
    a.route("Ticket", {"1.0.0": 90, "1.0.1": 10})
    wait_until(
        lambda: (
            (e := b.registry.find("Ticket")) is not None
            and e.routes == {"1.0.0": 90.0, "1.0.1": 10.0}
        ),
        5,
        "b taking the routes",
    )
    b.rollback("Ticket", "1.0.0")
    wait_until(lambda: a.registry.get("Ticket").routes == {"1.0.0": 100.0}, 5, "a rolled back")
    assert [d.kind for d in a.deployments][-4:] == ["model", "model", "route", "rollback"]


def test_a_host_that_missed_announcements_catches_up_before_deploying(
    tmp_path: Path,
) -> None:
    with temporary_database() as url:
        # No bus at all: b hears nothing, yet its own deploy first applies a's records,
        # so the version numbers stay one sequence.
        a = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url, node="a"))
        b = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url, node="b"))
        try:
            a.publish(SOURCE.format(extra=""))
            assert _active(b) is None
            published = b.publish(SOURCE.format(extra="    done: bool = False"))
            assert [p.version for p in published] == ["1.0.1"]
            assert b.registry.get("Ticket").versions.keys() == {"1.0.0", "1.0.1"}
        finally:
            a.close()
            b.close()
