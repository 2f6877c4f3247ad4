"""Datasources by URL scheme (``duckdb://``, ``memory://``, ``file://``, ...).

Factories are registered by scheme; a duplicate registration is refused, and an
unknown scheme is reported with the list of valid ones. Third-party stores register
through the ``microlib_kernel.datasources`` entry-point group, read only when a
scheme is not found (nothing is loaded at import time).

URLs follow SQLAlchemy's convention: ``duckdb:///relative.duckdb`` is relative to the
working directory, ``duckdb:////absolute/path.duckdb`` is absolute.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ..errors import DatasourceError

if TYPE_CHECKING:
    from ..config import Settings
    from .base import DataSource

Factory = Callable[[str, "Settings"], "DataSource"]

_FACTORIES: dict[str, Factory] = {}
_BUILTIN = {
    "memory": "microlib_kernel.store.memory:MemoryStore.from_url",
    "file": "microlib_kernel.store.file:FileStore.from_url",
    "duckdb": "microlib_kernel.store.duckdb:DuckDBStore.from_url",
    # PostgreSQL needs the ``postgres`` extra (psycopg 3 and psycopg_pool).
    "postgresql": "microlib_kernel.store.postgres:PostgresStore.from_url",
    "postgres": "microlib_kernel.store.postgres:PostgresStore.from_url",
}
_ENTRY_POINT_GROUP = "microlib_kernel.datasources"


def register_datasource(scheme: str, factory: Factory, *, replace: bool = False) -> None:
    """Register ``factory(url, settings) -> DataSource`` for ``scheme``.

    Raises:
        DatasourceError: the scheme is taken (pass ``replace=True`` to override).
    """
    scheme = scheme.lower()
    if not replace and (scheme in _FACTORIES or scheme in _BUILTIN):
        raise DatasourceError(f"a datasource for scheme {scheme!r} is already registered")
    _FACTORIES[scheme] = factory


def available_schemes() -> list[str]:
    """Every scheme that can be opened."""
    names = set(_FACTORIES) | set(_BUILTIN)
    names |= {ep.name for ep in entry_points(group=_ENTRY_POINT_GROUP)}
    return sorted(names)


def scheme_of(url: str) -> str:
    """The scheme of a datasource URL (``duckdb`` for ``duckdb:///x.duckdb``)."""
    if not isinstance(url, str) or "://" not in url:
        raise DatasourceError(
            f"datasource {url!r} is not a URL; use one of "
            + ", ".join(f"{s}://" for s in available_schemes())
            + " (e.g. duckdb:///.microlib/microlib.duckdb or memory://)"
        )
    return url.split("://", 1)[0].lower()


def create_datasource(url: str, settings: Settings) -> DataSource:
    """A (not yet opened) datasource for ``url``.

    Raises:
        DatasourceError: the scheme is unknown (the message lists the valid ones).
    """
    return _factory(scheme_of(url), f" in {url!r}")(url, settings)


def datasource_class(scheme: str) -> type[DataSource] | None:
    """The :class:`DataSource` class that ``scheme``'s URLs open, found without opening one.

    Known when the scheme's factory is a class's ``from_url`` (every built-in store's
    is), so its class attributes (``capabilities``) can be read; ``None`` for any other
    factory, whose class shows only once it is called.

    Raises:
        DatasourceError: the scheme is unknown, or its store needs a package that is not
            installed.
    """
    from .base import DataSource

    owner = getattr(_factory(scheme.lower()), "__self__", None)
    return owner if isinstance(owner, type) and issubclass(owner, DataSource) else None


def _factory(scheme: str, where: str = "") -> Factory:
    factory = _FACTORIES.get(scheme)
    if factory is None and scheme in _BUILTIN:
        factory = _load(_BUILTIN[scheme])
    if factory is None:
        for ep in entry_points(group=_ENTRY_POINT_GROUP):
            if ep.name == scheme:
                factory = ep.load()
                break
    if factory is None:
        raise DatasourceError(
            f"no datasource for scheme {scheme!r}{where}; valid schemes: "
            + ", ".join(available_schemes())
        )
    return factory


def _load(target: str) -> Factory:
    module, _, attr = target.partition(":")
    try:
        obj: object = importlib.import_module(module)
    except ImportError as exc:
        raise DatasourceError(
            f"this datasource needs a package that is not installed ({exc.name})"
        ) from None
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def redact_url(url: str) -> str:
    """The URL with its password masked (``postgresql://me:***@db/app``), for ``/config``,
    logs and messages."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    return urlunsplit(
        (
            parts.scheme,
            f"{parts.username}:***@{netloc[-1]}",
            parts.path,
            parts.query,
            parts.fragment,
        )
    )


def url_path(url: str, settings: Settings) -> Path | None:
    """The filesystem path of ``scheme:///relative`` or ``scheme:////absolute`` URLs.

    Returns ``None`` for ``scheme://:memory:`` or an empty path.
    """
    rest = url.split("://", 1)[1]
    if rest in ("", ":memory:") or rest.startswith(":memory:"):
        return None
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != ":memory:":
        raise DatasourceError(
            f"datasource {url!r} has a host part ({parts.netloc!r}); write "
            f"{scheme_of(url)}:///relative/path or {scheme_of(url)}:////absolute/path"
        )
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        return None
    return settings.path(path)
