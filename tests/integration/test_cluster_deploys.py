"""Deploys across hosts sharing a PostgreSQL deployment log, announced on a bus."""

from __future__ import annotations

import time
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


def test_a_deploy_cancelled_while_waiting_for_the_cluster_lock_gives_it_back(
    tmp_path: Path,
) -> None:
    import asyncio

    import psycopg

    from microlib_kernel.store.deployments_postgres import _DEPLOY_LOCK

    with temporary_database() as url:
        host = Host(settings=Settings.load(cwd=tmp_path, env={}, datasource=url, node="a"))
        try:
            with psycopg.connect(url, autocommit=True) as other:
                other.execute("SELECT pg_advisory_lock(%s)", (_DEPLOY_LOCK,))  # a deploy elsewhere

                async def deploy_with_deadline() -> None:
                    await asyncio.wait_for(host.publish_async(SOURCE.format(extra="")), 0.5)

                with pytest.raises(TimeoutError):
                    host.loop.run(deploy_with_deadline())
                other.execute("SELECT pg_advisory_unlock(%s)", (_DEPLOY_LOCK,))

                def held_elsewhere() -> bool:
                    rows = other.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    ).fetchone()
                    return bool(rows and rows[0])

                # The waiting thread gets the lock once it is free, and gives it back.
                time.sleep(0.5)
                wait_until(lambda: not held_elsewhere(), 10, "the lock given back")
            assert host.registry.find("Ticket") is None  # the cancelled deploy did nothing
            host.publish(SOURCE.format(extra=""))  # and the next one is not blocked
        finally:
            host.close()
