"""The ``DeploymentLog`` port: every acknowledged deployment change, in order, durably.

A host appends one :class:`DeploymentRecord` per publish (model, adapter, service or
module source), rollback, route change and unpublish *before* it answers, and replays
the log when it starts (:mod:`microlib_kernel.host.restore`), so a restarted host
serves exactly the versions, weights and pins it served before.

The log is append-only and ordered by ``seq``: replaying it from the start rebuilds the
state, and a second host reading the same log (a shared database, later) rebuilds the
same state. Implementations: :class:`MemoryDeploymentLog` (``memory://``,
``duckdb://:memory:``: nothing outlives the process) and
:class:`~microlib_kernel.store.deployments_duckdb.DuckDBDeploymentLog` (the embedded
default), and :class:`~microlib_kernel.store.deployments_postgres.PostgresDeploymentLog`
(a table several hosts share).

The port lives in ``store/`` next to :class:`~microlib_kernel.store.base.DataSource`
because stores must not import the host (import-linter contract); the host depends on
it, not the other way round.
"""

from __future__ import annotations

import abc
import datetime as dt
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import DatasourceError

if TYPE_CHECKING:
    from ..config import Settings

#: Record kinds: the four source kinds, then the three version-control changes.
SOURCE_KINDS = ("model", "adapter", "service", "module")
CHANGE_KINDS = ("rollback", "route", "unpublish")
RECORD_KINDS = SOURCE_KINDS + CHANGE_KINDS


@dataclass(frozen=True)
class DeploymentRecord:
    """One acknowledged deployment change.

    Attributes:
        kind: ``model``, ``adapter``, ``service``, ``module`` (a source was published),
            ``rollback``, ``route`` or ``unpublish``.
        names: the models a model source published; the adapter/service/module name;
            the model a change applies to.
        versions: the version of each model published (``None`` for other sources);
            for a rollback, the version now active.
        time: when the change was acknowledged (UTC).
        who: who asked (``http 127.0.0.1``, ``python``).
        source: the source text that was run (source kinds only).
        endpoints: the endpoint of each model published (model sources only).
        weights: the routes set by a ``route`` change (version -> weight).
        seq: the position in the log (assigned by :meth:`DeploymentLog.append`).
    """

    kind: str
    names: tuple[str, ...]
    versions: tuple[str | None, ...] = ()
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    who: str = "python"
    source: str | None = None
    endpoints: tuple[str | None, ...] = ()
    weights: dict[str, float] | None = None
    seq: int = 0

    def __post_init__(self) -> None:
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"deployment record kind must be one of {RECORD_KINDS}")

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-able data (what a log stores)."""
        return {
            "seq": self.seq,
            "kind": self.kind,
            "names": list(self.names),
            "versions": list(self.versions),
            "time": self.time.isoformat(),
            "who": self.who,
            "source": self.source,
            "endpoints": list(self.endpoints),
            "weights": dict(self.weights) if self.weights is not None else None,
        }

    def row(self) -> list[Any]:
        """The values a SQL log stores, in the order of its columns after ``seq``:
        time, kind, names, versions, endpoints, weights (JSON text), source, who."""
        weights = json.dumps(self.weights) if self.weights is not None else None
        return [
            self.time,
            self.kind,
            list(self.names),
            list(self.versions),
            list(self.endpoints),
            weights,
            self.source,
            self.who,
        ]

    def numbered(self, seq: int) -> DeploymentRecord:
        """This record with its place in the log."""
        return replace(self, seq=seq)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentRecord:
        """The inverse of :meth:`to_json`."""
        time = data["time"]
        if isinstance(time, str):
            time = dt.datetime.fromisoformat(time)
        weights = data.get("weights")
        return cls(
            kind=data["kind"],
            names=tuple(data.get("names") or ()),
            versions=tuple(data.get("versions") or ()),
            time=time,
            who=data.get("who") or "",
            source=data.get("source"),
            endpoints=tuple(data.get("endpoints") or ()),
            weights={str(k): float(v) for k, v in weights.items()} if weights else None,
            seq=int(data.get("seq") or 0),
        )


class DeploymentLog(abc.ABC):
    """Where a host's deployment changes are kept.

    Contract (``tests/unit/test_deployment_log.py`` runs it on every implementation):

    * :meth:`append` returns only once the record is durable (committed); it returns
      the record with its ``seq``, which grows by one per record.
    * :meth:`load` returns every record appended, in ``seq`` order, including those
      appended by an earlier process on the same storage.
    * The methods are synchronous and thread-safe; the host calls them from a worker
      thread, so a slow disk never stalls the loop that serves requests.
    """

    #: ``True`` when records outlive the process.
    durable: bool = False

    @abc.abstractmethod
    def append(self, record: DeploymentRecord) -> DeploymentRecord:
        """Store ``record`` durably; returns it with its ``seq``.

        Raises:
            DatasourceError: the record could not be stored (nothing was stored).
        """

    @abc.abstractmethod
    def load(self) -> list[DeploymentRecord]:
        """Every record, oldest first."""

    #: ``True`` when several hosts append to this log (they then deploy one at a time,
    #: under :meth:`lock`, and catch up with each other's records first).
    shared: bool = False

    def lock(self) -> None:  # noqa: B027 - optional
        """Wait until no other host is deploying, and keep them waiting (shared logs)."""

    def unlock(self) -> None:  # noqa: B027 - optional
        """Let the other hosts deploy again."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release the storage (idempotent)."""

    def describe(self) -> str:
        """One line: where the records are kept."""
        return type(self).__name__


class MemoryDeploymentLog(DeploymentLog):
    """Records in a list: for ``memory://`` hosts and unit tests (nothing is durable)."""

    def __init__(self) -> None:
        self._records: list[DeploymentRecord] = []
        self._lock = threading.Lock()

    def append(self, record: DeploymentRecord) -> DeploymentRecord:
        with self._lock:
            stored = replace(record, seq=len(self._records) + 1)
            self._records.append(stored)
            return stored

    def load(self) -> list[DeploymentRecord]:
        with self._lock:
            return list(self._records)

    def describe(self) -> str:
        return "memory (lost when the process ends)"


LogFactory = Callable[[str, "Settings"], DeploymentLog]
_FACTORIES: dict[str, LogFactory] = {}
_BUILTIN = ("duckdb", "file", "postgresql", "postgres")


def register_deployment_log(scheme: str, factory: LogFactory, *, replace: bool = False) -> None:
    """Keep the deployment log of hosts whose datasource has ``scheme`` with ``factory``.

    Raises:
        DatasourceError: the scheme already has a factory (pass ``replace=True``).
    """
    scheme = scheme.lower()
    if not replace and (scheme in _FACTORIES or scheme in _BUILTIN):
        raise DatasourceError(f"a deployment log for scheme {scheme!r} is already registered")
    _FACTORIES[scheme] = factory


def open_deployment_log(url: str, settings: Settings) -> DeploymentLog:
    """The deployment log of a host whose default datasource is ``url``.

    ``duckdb:///x.duckdb`` keeps it in the sibling file ``x.deployments.duckdb``;
    ``file:///dir`` in ``dir/deployments.duckdb``; ``postgresql://...`` in a table of
    that database (shared by every host on it); ``memory://``, ``duckdb://:memory:``
    and schemes without a registered log keep it in memory.

    Raises:
        DatasourceError: the log's file cannot be opened.
    """
    from .registry import scheme_of, url_path

    scheme = scheme_of(url)
    factory = _FACTORIES.get(scheme)
    if factory is not None:
        return factory(url, settings)
    if scheme in ("postgresql", "postgres"):
        from .deployments_postgres import PostgresDeploymentLog
        from .postgres_url import split_url

        return PostgresDeploymentLog(split_url(url)[0])
    if scheme in ("duckdb", "file"):
        path = url_path(url, settings)
        if path is not None:
            from .deployments_duckdb import DuckDBDeploymentLog, log_path

            return DuckDBDeploymentLog(log_path(path, directory=scheme == "file"))
    return MemoryDeploymentLog()
