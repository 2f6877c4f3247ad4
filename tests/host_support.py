"""How the shared ``host`` fixture (tests/integration/conftest.py) builds its :class:`Host`.

A test module that needs another datasource, other settings or other ``Host(...)``
arguments overrides the ``host_options`` fixture; the ``host`` fixture itself is never
redefined, so every host a test gets is closed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from microlib_kernel import Host
from microlib_kernel.config import Settings

#: A DuckDB file in the test's own folder (the autouse fixture makes it the working
#: directory): the product's default kind of datasource.
DEFAULT_DATASOURCE = "duckdb:///host.duckdb"


class HostOptions:
    """What to build: ``Host(datasource, settings=Settings.load(**settings), **host_kwargs)``.

    Args:
        datasource: the host's default datasource URL (relative paths are in the test's
            folder).
        settings: ``Settings`` fields to set (``sql_timeout=0.5``) over what the working
            directory and the environment say.
        host_kwargs: any other ``Host(...)`` keyword argument (``port=0``, ``clock=...``).
    """

    def __init__(
        self,
        datasource: str = DEFAULT_DATASOURCE,
        *,
        settings: Mapping[str, Any] | None = None,
        **host_kwargs: Any,
    ) -> None:
        if "settings" in host_kwargs or "datasource" in host_kwargs:
            raise TypeError("pass datasource and settings once, by their own arguments")
        self.datasource = datasource
        self.settings = dict(settings or {})
        self.host_kwargs = host_kwargs

    def build(self) -> Host:
        """A new host with these options (the caller closes it)."""
        # Settings.load reads the environment at build time, so a fixture that sets a
        # MICROLIB_* variable (a secret key) before the host is built is honoured.
        settings = Settings.load(**self.settings)
        return Host(self.datasource, settings=settings, **self.host_kwargs)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.host_kwargs.items())
        return f"HostOptions({self.datasource!r}, settings={self.settings!r}{extra})"
