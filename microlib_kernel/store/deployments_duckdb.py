"""The deployment log of the embedded default: one DuckDB table in a sibling file.

``.microlib/microlib.duckdb`` keeps its log in ``.microlib/microlib.deployments.duckdb``.
A sibling file rather than a table in the data file because:

* ``POST /sql`` and ``host.sql`` run on the data file's connection: a table there would
  be readable by every SQL caller, and sources may carry service configuration.
* the data file's single writer commits model writes in groups; a deploy then never
  waits behind a batch of writes, nor the writes behind a deploy.
* starting afresh (dropping every deployment, keeping the data) is deleting one file.

The cost: a deploy's schema change (new columns) and its log record are two commits in
two files. The table change comes first, so a crash between them leaves an extra
column (kept anyway, DESIGN.md §5) and no version: the deploy was not acknowledged.

Every :meth:`append` is one autocommitted ``INSERT``: DuckDB writes it to its WAL
before ``execute`` returns, so a killed process (SIGKILL) loses no acknowledged record.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from ..errors import DatasourceError
from .deployments import DeploymentLog, DeploymentRecord

#: Bumped when the table's shape changes (the meta table records it).
FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS microlib_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS deployment_log (
    seq BIGINT PRIMARY KEY,
    time TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,
    names VARCHAR[] NOT NULL,
    versions VARCHAR[] NOT NULL,
    endpoints VARCHAR[] NOT NULL,
    weights JSON,
    source VARCHAR,
    who VARCHAR NOT NULL
);
"""

_COLUMNS = "seq, epoch_us(time), kind, names, versions, endpoints, weights, source, who"


def log_path(data_path: Path, *, directory: bool = False) -> Path:
    """Where the log of a datasource lives: ``x.duckdb`` -> ``x.deployments.duckdb``;
    a ``file://`` folder keeps ``deployments.duckdb`` inside it."""
    if directory:
        return data_path / "deployments.duckdb"
    return data_path.with_name(f"{data_path.stem}.deployments.duckdb")


class DuckDBDeploymentLog(DeploymentLog):
    """A :class:`DeploymentLog` in a DuckDB file (opened on construction).

    Args:
        path: the database file (created with its folder when missing).

    Raises:
        DatasourceError: the file cannot be opened, or was written by a newer format.
    """

    durable = True

    def __init__(self, path: Path) -> None:
        import duckdb

        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con: Any = duckdb.connect(str(path), config={"enable_external_access": False})
        except (OSError, duckdb.Error) as exc:
            raise DatasourceError(f"cannot open the deployment log {path}: {exc}") from None
        try:
            self._con.execute(_SCHEMA)
            row = self._con.execute(
                "SELECT value FROM microlib_meta WHERE key = 'format'"
            ).fetchone()
            if row is None:
                self._con.execute("INSERT INTO microlib_meta VALUES ('format', ?)", [str(FORMAT)])
            elif int(row[0]) > FORMAT:
                raise DatasourceError(
                    f"the deployment log {path} has format {row[0]}; this microlib-kernel "
                    f"reads format {FORMAT}: upgrade microlib-kernel"
                )
        except BaseException:
            self._con.close()
            raise

    def describe(self) -> str:
        return f"duckdb: {self.path}"

    def append(self, record: DeploymentRecord) -> DeploymentRecord:
        import duckdb

        with self._lock:
            if self._con is None:
                raise DatasourceError(f"the deployment log {self.path} is closed")
            try:
                # One statement, autocommitted: the record is in the WAL when it returns.
                row = self._con.execute(
                    "INSERT INTO deployment_log SELECT coalesce(max(seq), 0) + 1, "
                    "?, ?, ?, ?, ?, ?, ?, ? FROM deployment_log RETURNING seq",
                    record.row(),
                ).fetchone()
            except duckdb.Error as exc:
                raise DatasourceError(f"{self.path} refused the record: {exc}") from None
        return record.numbered(int(row[0]))

    def load(self) -> list[DeploymentRecord]:
        with self._lock:
            if self._con is None:
                raise DatasourceError(f"the deployment log {self.path} is closed")
            rows = self._con.execute(
                f"SELECT {_COLUMNS} FROM deployment_log ORDER BY seq"
            ).fetchall()
        return [_record(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            if self._con is None:
                return
            con, self._con = self._con, None
        try:
            con.execute("CHECKPOINT")
        except Exception:
            pass  # the WAL is replayed on the next open
        con.close()


def _record(row: tuple[Any, ...]) -> DeploymentRecord:
    seq, micros, kind, names, versions, endpoints, weights, source, who = row
    return DeploymentRecord(
        kind=kind,
        names=tuple(names),
        versions=tuple(versions),
        time=dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros),
        who=who,
        source=source,
        endpoints=tuple(endpoints),
        weights={str(k): float(v) for k, v in json.loads(weights).items()} if weights else None,
        seq=int(seq),
    )
