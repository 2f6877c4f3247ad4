"""The host's datasources (by URL) and the repository of each table (by endpoint)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..store.registry import create_datasource
from .repository import Change, Repository

if TYPE_CHECKING:
    import datetime as dt

    from ..config import Settings
    from ..domain.events import EventBroker
    from ..store.base import DataSource
    from ..store.cache import InstanceCache

log = logging.getLogger("microlib_kernel.host")


class Repositories:
    """Opens datasources once per URL and keeps one :class:`Repository` per table.

    Args:
        settings: the host's settings (the default datasource URL, store options).
        cache: the instance cache every repository shares.
        events: the broker repositories emit ``created``/``updated``/``deleted`` on.
        now: the UTC clock of row timestamps.
    """

    def __init__(
        self,
        settings: Settings,
        cache: InstanceCache,
        events: EventBroker,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.events = events
        self.now = now
        self._datasources: dict[str, DataSource] = {}
        self._repos: dict[str, Repository] = {}
        self._listeners: list[Callable[[Change], None]] = []
        self._default: DataSource | None = None

    @property
    def default(self) -> DataSource:
        """The default datasource (opened by :meth:`open_default`)."""
        if self._default is None:
            raise RuntimeError("the default datasource is not open yet")
        return self._default

    async def open_default(self) -> DataSource:
        """Open the settings' datasource."""
        self._default = await self.open(self.settings.datasource)
        return self._default

    async def open(self, url: str) -> DataSource:
        """The datasource at ``url``, opened on first use."""
        store = self._datasources.get(url)
        if store is None:
            store = create_datasource(url, self.settings)
            await store.open()
            self._datasources[url] = store
        return store

    def datasource_for(self, spec_datasource: str | None) -> str:
        """The URL a model's table lives on."""
        return spec_datasource or self.settings.datasource

    def get(self, endpoint: str) -> Repository:
        """The repository of a table (it exists once a model using it was published)."""
        try:
            return self._repos[endpoint]
        except KeyError:
            raise NotFound(f"no model serves endpoint {endpoint!r}") from None

    def find(self, endpoint: str) -> Repository | None:
        """The repository of a table, or ``None``."""
        return self._repos.get(endpoint)

    def bind(self, table: str, model: str, store: DataSource) -> Repository:
        """The repository of ``table`` on ``store`` (a new one if the table moved stores)."""
        repo = self._repos.get(table)
        if repo is None or repo.store is not store:
            repo = Repository(
                table, model, store, self.cache, self.events, self._listeners, now=self.now
            )
            self._repos[table] = repo
        return repo

    def on_change(self, listener: Callable[[Change], None]) -> None:
        """Call ``listener(change)`` after every committed write (cache coherence hook)."""
        self._listeners.append(listener)

    async def close(self) -> None:
        """Close every datasource (each failure is logged, the others still close)."""
        for store in self._datasources.values():
            try:
                await store.close()
            except Exception:
                log.exception("closing %s failed", store.describe())
