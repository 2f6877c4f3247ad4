"""Serverless: a notebook's models as an AWS Lambda function, through Mangum.

* :func:`make_handler` -- ``handler = make_handler("orders.ipynb")`` in the
  function's ``handler.py``: the ``%%microlib`` cells are published at cold start,
  and every API Gateway (REST or HTTP API), ALB or Function URL event is answered by
  the same app as the HTTP server.
* ``microlib export lambda NOTEBOOK -o DIR`` writes a deployable bundle
  (:mod:`microlib_kernel.serverless.export`).

The handler needs the ``serverless`` extra (``pip install
'microlib-kernel[serverless]'``, i.e. Mangum); it is imported when first used, so
reading and writing sources (:mod:`.sources`) works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import LAMBDA_DATASOURCE, lambda_settings
from .sources import Source, load_sources

if TYPE_CHECKING:
    from .handler import LambdaFunction, make_handler

_LAZY = {"make_handler", "LambdaFunction", "publish_sources"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'microlib_kernel.serverless' has no attribute {name!r}")
    from . import handler

    value = getattr(handler, name)
    globals()[name] = value
    return value


__all__ = [
    "LAMBDA_DATASOURCE",
    "LambdaFunction",
    "Source",
    "lambda_settings",
    "load_sources",
    "make_handler",
]
