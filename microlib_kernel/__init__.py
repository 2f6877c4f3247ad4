"""microlib-kernel: microservice libraries in Jupyter.

Define models in notebook cells, hot-publish them into a host running in the kernel,
persist them in DuckDB, serve a REST API, query them with SQL, orchestrate ports and
adapters with sagas, and deploy whole notebooks with papermill.

Importing this package opens nothing, starts nothing and reads no environment; every
public name but the errors is imported when first used (``from microlib_kernel import
Model`` works as usual).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BadQuery,
    BreakerOpen,
    Conflict,
    DatasourceError,
    DatasourceLocked,
    DatasourceUnavailable,
    DeployRefused,
    Forbidden,
    MicrolibError,
    NotFound,
    PayloadTooLarge,
    PortFailed,
    PortTimeout,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    Vetoed,
)
from .version import __version__ as __version__

if TYPE_CHECKING:
    from .client import HostClient
    from .domain.commands import command
    from .domain.events import Event
    from .domain.model import Model
    from .domain.ports import port
    from .domain.relations import relation
    from .domain.secrets import Secret
    from .host import Host, Published
    from .sql_result import SqlResult

# Imported on first use (PEP 562): ``microlib`` commands and the papermill runner of a
# deployment import this package but not pydantic models, and each of them sits on the
# cold-start path of ``microlib serve`` (about 0.3 s each).
_LAZY = {
    "Model": ("microlib_kernel.domain.model", "Model"),
    "Event": ("microlib_kernel.domain.events", "Event"),
    "command": ("microlib_kernel.domain.commands", "command"),
    "port": ("microlib_kernel.domain.ports", "port"),
    "relation": ("microlib_kernel.domain.relations", "relation"),
    "Host": ("microlib_kernel.host", "Host"),
    "Published": ("microlib_kernel.host", "Published"),
    "HostClient": ("microlib_kernel.client", "HostClient"),
    "Secret": ("microlib_kernel.domain.secrets", "Secret"),
    "SqlResult": ("microlib_kernel.sql_result", "SqlResult"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'microlib_kernel' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext microlib_kernel``: create the in-kernel host and register the magics."""
    from .notebook.extension import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext microlib_kernel``: stop the server and close the host."""
    from .notebook.extension import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "BadQuery",
    "BreakerOpen",
    "Conflict",
    "DatasourceError",
    "DatasourceLocked",
    "DatasourceUnavailable",
    "DeployRefused",
    "Event",
    "Forbidden",
    "Host",
    "HostClient",
    "MicrolibError",
    "Model",
    "NotFound",
    "PayloadTooLarge",
    "PortFailed",
    "PortTimeout",
    "Published",
    "Secret",
    "ServiceUnavailable",
    "SqlResult",
    "Unauthorized",
    "ValidationFailed",
    "Vetoed",
    "command",
    "load_ipython_extension",
    "port",
    "relation",
    "unload_ipython_extension",
]
