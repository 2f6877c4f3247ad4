"""The deployment log on PostgreSQL: one table that several hosts share (issue 16).

Hosts whose datasource is ``postgresql://...`` keep their log in the table
``microlib_deployment_log`` of that database, so a host started later, or restarted,
replays the same records and serves what is active. (Telling running hosts about a
record appended by another host is the bus's job, not the log's.)

Each :meth:`append` is one transaction that takes the table's ``SHARE ROW EXCLUSIVE``
lock and inserts ``max(seq) + 1``: sequence numbers have no gaps and follow commit order,
so a reader that has seen ``seq <= n`` never misses a record committed later with a
smaller number (an identity column would give no such promise). Appends are rare
(deploys), so serialising them costs nothing that matters.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import DatasourceError
from .deployments import DeploymentLog, DeploymentRecord

_TABLE = "microlib_deployment_log"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    seq BIGINT PRIMARY KEY,
    time TIMESTAMPTZ NOT NULL,
    kind TEXT NOT NULL,
    names TEXT[] NOT NULL,
    versions TEXT[] NOT NULL,
    endpoints TEXT[] NOT NULL,
    weights JSONB,
    source TEXT,
    who TEXT NOT NULL
)
"""
#: The advisory lock key of deploys (any constant: it names the lock in this database).
_DEPLOY_LOCK = 0x6D6963726F6C6962  # "microlib"
#: Seconds a host waits for another host's deploy to finish.
_LOCK_WAIT = 60.0
_COLUMNS = "seq, time, kind, names, versions, endpoints, weights, source, who"


class PostgresDeploymentLog(DeploymentLog):
    """A :class:`DeploymentLog` in a PostgreSQL table (psycopg 3, one connection).

    Args:
        url: a libpq URL, ``postgresql://user@host:port/db``.

    Raises:
        DatasourceError: psycopg is missing, or the database cannot be reached.
    """

    durable = True
    shared = True

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._con: Any = None
        self._deploy_con: Any = None
        self._closed = False

        def create(con: Any) -> None:
            # Hosts starting together would race on CREATE TABLE IF NOT EXISTS.
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", (_DEPLOY_LOCK + 1,))
                con.execute(_SCHEMA)

        with self._lock:
            self._run(create)

    def describe(self) -> str:
        return f"postgresql: {_TABLE}"

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise DatasourceError(
                "the PostgreSQL deployment log needs psycopg: pip install 'psycopg[binary]'"
            ) from None
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise DatasourceError(f"cannot reach the deployment log's database: {exc}") from None

    def _run(self, job: Any, *, retry: bool = False) -> Any:
        """Run ``job(connection)``; a broken connection is dropped (the next call reconnects).

        With ``retry`` (reads only), a connection the server dropped (a restart, an idle
        timeout) is replaced and the job run once more. Appends are never retried: a
        COMMIT whose answer was lost may have committed.
        """
        import psycopg

        if self._closed:
            raise DatasourceError("the PostgreSQL deployment log is closed")
        for attempt in (1, 2):
            if self._con is None or self._con.closed:
                self._con = self._connect()
            try:
                return job(self._con)
            except psycopg.Error as exc:
                broken = self._con.broken or self._con.closed
                if broken:
                    self._con = None
                if not (retry and broken and attempt == 1):
                    raise DatasourceError(
                        f"the deployment log's database refused it: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    def append(self, record: DeploymentRecord) -> DeploymentRecord:
        params = record.row()

        def insert(con: Any) -> int:
            with con.transaction():
                con.execute(f"LOCK TABLE {_TABLE} IN SHARE ROW EXCLUSIVE MODE")
                row = con.execute(
                    f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT coalesce(max(seq), 0) + 1, "
                    f"%s, %s, %s, %s, %s, %s::jsonb, %s, %s FROM {_TABLE} RETURNING seq",
                    params,
                ).fetchone()
            return int(row[0])

        with self._lock:
            seq = self._run(insert)
        return record.numbered(seq)

    def load(self) -> list[DeploymentRecord]:
        with self._lock:
            rows = self._run(
                lambda con: con.execute(f"SELECT {_COLUMNS} FROM {_TABLE} ORDER BY seq").fetchall(),
                retry=True,
            )
        return [_record(row) for row in rows]

    def lock(self) -> None:
        """A session advisory lock on its own connection: one host deploys at a time.

        Held while a host catches up, runs the new source and appends its record, so
        two hosts never number the same model's next version alike. A host that dies
        holding it loses its connection, and with it the lock.
        """
        import psycopg

        con = self._connect()
        try:
            # A holder that hangs must not hang every host's deploys with it.
            con.execute(f"SET lock_timeout = '{int(_LOCK_WAIT * 1000)}ms'")
            con.execute("SELECT pg_advisory_lock(%s)", (_DEPLOY_LOCK,))
        except psycopg.Error as exc:
            con.close()
            raise DatasourceError(
                f"cannot take the cluster's deploy lock (another host has held it for "
                f"{_LOCK_WAIT:g} s, or the database refused): {str(exc).strip()}"
            ) from None
        self._deploy_con = con

    def unlock(self) -> None:
        con, self._deploy_con = self._deploy_con, None
        if con is None:
            return
        try:
            con.execute("SELECT pg_advisory_unlock(%s)", (_DEPLOY_LOCK,))
        except Exception:  # closing the connection releases it anyway
            pass
        finally:
            con.close()

    def close(self) -> None:
        self.unlock()
        with self._lock:
            self._closed = True
            con, self._con = self._con, None
        if con is not None:
            con.close()


def _record(row: tuple[Any, ...]) -> DeploymentRecord:
    seq, time, kind, names, versions, endpoints, weights, source, who = row
    return DeploymentRecord(
        kind=kind,
        names=tuple(names),
        versions=tuple(versions),
        time=time,
        who=who,
        source=source,
        endpoints=tuple(endpoints),
        weights={str(k): float(v) for k, v in weights.items()} if weights else None,
        seq=int(seq),
    )
