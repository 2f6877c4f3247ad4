"""The DeploymentLog contract: the log of every registered datasource passes these.

The datasources come from the registry (tests/datasource_support.py): ``memory://``
keeps its log in memory, ``duckdb://`` and ``file://`` in a DuckDB file, PostgreSQL in
a table of a throwaway database (tests/pg_support.py).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from microlib_kernel import DatasourceError
from microlib_kernel.config import Settings
from microlib_kernel.store.deployments import (
    DeploymentLog,
    DeploymentRecord,
    MemoryDeploymentLog,
    open_deployment_log,
    register_deployment_log,
)
from microlib_kernel.store.deployments_duckdb import DuckDBDeploymentLog, log_path
from microlib_kernel.store.deployments_postgres import PostgresDeploymentLog
from tests.datasource_support import requires
from tests.pg_support import SERVER, temporary_database

SOURCE = (
    "from microlib_kernel import Model\nclass Order(Model, endpoint='orders'):\n    x: int = 0\n"
)


def model_record(version: str, **extra: object) -> DeploymentRecord:
    return DeploymentRecord(
        "model", ("Order",), (version,), source=SOURCE, endpoints=("orders",), **extra
    )


PG_ADMIN = f"{SERVER}/postgres"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own (random name), dropped afterwards."""
    with temporary_database() as url:
        yield url


@pytest.fixture
def make_log(datasource_url: str, tmp_path: Path) -> Iterator[Callable[[], DeploymentLog]]:
    """Opens the log of a host on the datasource (again: as a restarted host would)."""
    opened: list[DeploymentLog] = []
    settings = Settings.load(cwd=tmp_path, env={})

    def make() -> DeploymentLog:
        # A log kept in memory lives as long as its process: "opening it again" is
        # the same process finding the same log.
        if opened and not opened[0].durable:
            return opened[0]
        log = open_deployment_log(datasource_url, settings)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def test_append_numbers_records_and_load_returns_them_in_order(make_log) -> None:
    log = make_log()
    first = log.append(model_record("1.0.0", who="http 127.0.0.1"))
    second = log.append(DeploymentRecord("route", ("Order",), weights={"1.0.0": 90, "1.0.1": 10}))
    third = log.append(DeploymentRecord("unpublish", ("Order",), (None,)))
    assert (first.seq, second.seq, third.seq) == (1, 2, 3)
    loaded = log.load()
    assert [r.seq for r in loaded] == [1, 2, 3]
    assert loaded[0].source == SOURCE and loaded[0].endpoints == ("orders",)
    assert loaded[0].who == "http 127.0.0.1" and loaded[0].versions == ("1.0.0",)
    assert loaded[1].weights == {"1.0.0": 90.0, "1.0.1": 10.0}
    assert loaded[2].versions == (None,) and loaded[2].kind == "unpublish"
    assert abs((loaded[0].time - first.time).total_seconds()) < 1e-3
    assert loaded[0].time.tzinfo is not None


def test_records_survive_reopening(make_log) -> None:
    log = make_log()
    log.append(model_record("1.0.0"))
    log.append(DeploymentRecord("rollback", ("Order",), ("1.0.0",)))
    if log.durable:
        log.close()
    again = make_log()
    assert [(r.seq, r.kind) for r in again.load()] == [(1, "model"), (2, "rollback")]
    assert again.append(model_record("1.0.1")).seq == 3


def test_concurrent_appends_get_distinct_seqs(make_log) -> None:
    log = make_log()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                log.append(model_record(f"{i}.0.{j}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    seqs = [r.seq for r in log.load()]
    assert seqs == list(range(1, 41))


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        DeploymentRecord("explode", ("x",))


def test_record_json_round_trip() -> None:
    record = DeploymentRecord(
        "route", ("Order",), time=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), weights={"1.0.0": 5}
    )
    assert DeploymentRecord.from_json(record.to_json()) == DeploymentRecord(
        "route", ("Order",), time=record.time, weights={"1.0.0": 5.0}
    )


def test_a_closed_duckdb_log_refuses_with_a_clear_error(tmp_path: Path) -> None:
    log = DuckDBDeploymentLog(tmp_path / "x.deployments.duckdb")
    log.close()
    log.close()  # idempotent
    with pytest.raises(DatasourceError, match="closed"):
        log.append(model_record("1.0.0"))


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "x.deployments.duckdb"
    DuckDBDeploymentLog(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE microlib_meta SET value = '99' WHERE key = 'format'")
    con.close()
    with pytest.raises(DatasourceError, match="format 99"):
        DuckDBDeploymentLog(path)


def test_the_log_is_chosen_by_the_datasource_url(tmp_path: Path) -> None:
    settings = Settings.load(cwd=tmp_path, env={})
    duck = open_deployment_log("duckdb:///data/app.duckdb", settings)
    folder = open_deployment_log("file:///files", settings)
    try:
        assert isinstance(duck, DuckDBDeploymentLog) and duck.durable
        assert duck.path == tmp_path / "data" / "app.deployments.duckdb"
        assert isinstance(folder, DuckDBDeploymentLog)
        assert folder.path == tmp_path / "files" / "deployments.duckdb"
    finally:
        duck.close()
        folder.close()
    for url in ("memory://", "duckdb://:memory:"):
        log = open_deployment_log(url, settings)
        assert isinstance(log, MemoryDeploymentLog) and not log.durable
    assert log_path(Path("/a/b.duckdb")) == Path("/a/b.deployments.duckdb")


def test_a_scheme_can_register_its_own_log(tmp_path: Path) -> None:
    settings = Settings.load(cwd=tmp_path, env={})
    made: list[str] = []

    def factory(url: str, _: Settings) -> DeploymentLog:
        made.append(url)
        return MemoryDeploymentLog()

    register_deployment_log("testlog", factory)
    try:
        with pytest.raises(DatasourceError, match="already registered"):
            register_deployment_log("testlog", factory)
        with pytest.raises(DatasourceError, match="already registered"):
            register_deployment_log("duckdb", factory)
        open_deployment_log("testlog://somewhere", settings)
        assert made == ["testlog://somewhere"]
    finally:
        from microlib_kernel.store import deployments

        deployments._FACTORIES.pop("testlog", None)


@requires("shared")
def test_two_logs_on_one_shared_datasource_see_one_history(make_log) -> None:
    """Hosts sharing a datasource append to, and replay, the same ordered log."""
    a, b = make_log(), make_log()
    try:
        errors: list[BaseException] = []

        def work(log: DeploymentLog, tag: str) -> None:
            try:
                for j in range(15):
                    log.append(model_record(f"1.{tag}.{j}"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(log, t)) for log, t in ((a, "1"), (b, "2"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert a.load() == b.load()
        assert [r.seq for r in a.load()] == list(range(1, 31))  # no gaps
    finally:
        a.close()
        b.close()


def test_a_postgres_log_reconnects_after_its_connection_is_killed(pg_url: str) -> None:
    import psycopg

    log = PostgresDeploymentLog(pg_url)
    try:
        log.append(model_record("1.0.0"))
        pid = log._con.info.backend_pid
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(DatasourceError, match="refused"):
            log.append(model_record("1.0.1"))  # the answer is an error (503 upstream)
        assert log.append(model_record("1.0.1")).seq == 2  # the next one reconnects
        assert [r.versions for r in log.load()] == [("1.0.0",), ("1.0.1",)]
        # A read (catching up, restoring) retries once on a new connection at once.
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [log._con.info.backend_pid])
        assert [r.versions for r in log.load()] == [("1.0.0",), ("1.0.1",)]
    finally:
        log.close()
    with pytest.raises(DatasourceError, match="closed"):
        log.load()
