"""``make_handler``: a notebook's models as an AWS Lambda handler.

.. code-block:: python

    # handler.py, the function's entry point (handler.handler)
    from microlib_kernel.serverless import make_handler

    handler = make_handler("orders.ipynb")        # or an exported folder of sources

At cold start (when the module is imported) a host is created and the notebook's
``%%microlib model|adapter|service|module`` cells are published into it, in order,
exactly as when the notebook is streamed to a running host: each cell runs in a
module of its own through ``host.publish(text, kind=, name=, version=)``. No Jupyter
kernel is involved. Every invocation is then answered by the same Starlette app as
the HTTP server (``create_app(host.api)``), through Mangum.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from ..config import Settings
from ..errors import DeployRefused, MicrolibError
from ..host.deploy import Published
from ..host.exit import close_at_exit
from ..host.host import Host
from .settings import base_path as base_path_of
from .settings import lambda_settings
from .sources import Source, load_sources

try:
    from .adapter import HostLoopMangum, LambdaPaths
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    if exc.name != "mangum":
        raise
    raise ImportError(
        "microlib_kernel.serverless needs Mangum: pip install 'microlib-kernel[serverless]'"
    ) from exc

log = logging.getLogger("microlib_kernel.serverless")


class LambdaFunction:
    """A Lambda handler: call it with ``(event, context)``; it returns the response dict.

    Attributes:
        host: the host serving the models (one per execution environment).
        app: the ASGI app (``create_app(host.api)`` behind :class:`LambdaPaths`).
        published: what the cold start published, in order.
        sources: the sources it was built from.
    """

    def __init__(
        self, host: Host, sources: Sequence[Source], published: list[Published], base_path: str
    ) -> None:
        from ..http.app import create_app

        self.host = host
        self.sources = list(sources)
        self.published = published
        self.app = LambdaPaths(create_app(host.api), host.settings.api_root)
        self.mangum = HostLoopMangum(self.app, host, api_gateway_base_path=base_path)

    def __call__(self, event: Any, context: Any = None) -> dict[str, Any]:
        """Answer one Lambda invocation (never raises: errors are HTTP responses)."""
        return self.mangum(event, context)

    def close(self) -> None:
        """Close the host: flush and close its datasources (idempotent)."""
        self.host.close()

    def __repr__(self) -> str:
        names = ", ".join(f"{p.name} {p.version}" for p in self.published if p.version)
        return f"<LambdaFunction {names or 'no models'} on {self.host.datasource.describe()}>"


def make_handler(
    source: str | os.PathLike[str] | Sequence[Source],
    datasource: str | None = None,
    *,
    base_path: str | None = None,
    settings: Settings | None = None,
) -> LambdaFunction:
    """Build a Lambda handler serving the models of a notebook or an exported folder.

    Args:
        source: an ``.ipynb`` notebook (its ``%%microlib`` cells), a folder written
            by ``microlib export lambda`` (``manifest.json`` + ``.py`` files), or
            :class:`Source` objects.
        datasource: where data lives. ``None``: ``MICROLIB_DATASOURCE``, else
            ``duckdb:////tmp/microlib.duckdb`` (one file per Lambda instance, lost
            with it; see the README for what suits Lambda).
        base_path: a path prefix to remove before routing, for a custom domain's
            base path mapping (``None``: ``MICROLIB_LAMBDA_BASE_PATH``, else none).
            HTTP API stage prefixes are removed on their own.
        settings: complete settings (default: ``MICROLIB_*`` environment variables,
            as for any host).

    Returns:
        The handler; it also closes its host when the process exits.

    Raises:
        DeployRefused: a source fails; the message names the notebook cell or file.
        DatasourceError: the datasource cannot be opened.
    """
    sources = load_sources(source) if isinstance(source, str | os.PathLike) else list(source)
    if not sources:
        where = source if isinstance(source, str | os.PathLike) else "the sources given"
        raise DeployRefused(
            f"{where} has no %%microlib model, adapter, service or module cell: nothing to serve"
        )
    os.environ.setdefault("HOME", "/tmp")  # DuckDB wants a home; Lambda sets none
    host = Host(settings=lambda_settings(datasource, settings))
    try:
        # A cold start is a start: sources a restored deployment log already serves
        # (an instance whose /tmp survived) publish nothing new (see PublishPipeline.unchanged).
        host.starting = True
        published = publish_sources(host, sources)
        host.starting = False
        function = LambdaFunction(host, sources, published, base_path_of(base_path))
    except BaseException:
        host.close()
        raise
    close_at_exit(host)  # a local run; Lambda just freezes or kills the process
    log.info("cold start: published %s", ", ".join(_describe(p) for p in published))
    return function


def publish_sources(host: Host, sources: Sequence[Source]) -> list[Published]:
    """Publish ``sources`` in order, as code streaming does.

    Raises:
        DeployRefused: the first source that fails, with where it came from.
    """
    published: list[Published] = []
    for source in sources:
        try:
            published += host.publish(
                source.text, kind=source.kind, name=source.name, version=source.version
            )
        except MicrolibError as exc:
            hint = ""
            if "NameError" in exc.message:
                hint = (
                    " (each %%microlib cell runs in a module of its own, as when a notebook "
                    "is deployed to a host: import in the cell what it uses)"
                )
            raise DeployRefused(
                f"{source.origin} ({source.kind}{' ' + source.name if source.name else ''}): "
                f"{exc.message}{hint}",
                origin=source.origin,
            ) from None
    return published


def _describe(p: Published) -> str:
    return f"{p.name} {p.version} at /{p.endpoint}" if p.version else p.name


__all__ = ["LambdaFunction", "make_handler", "publish_sources"]
