"""The Jupyter side of microlib: a server extension and the host registry it reads.

* :mod:`.registry` (standard library and ``jupyter_core`` only): the registration
  files in the Jupyter runtime directory, written by in-kernel hosts and by the
  server extension, read by both.
* :mod:`.app`, :mod:`.handlers` (need ``jupyter_server``): ``GET /microlib/hosts`` and
  the authenticated proxy ``/microlib/proxy/{kernel_id}/...``.

Importing this package imports neither ``jupyter_server`` nor ``tornado``: the
extension app is found through :func:`_jupyter_server_extension_points`, which the
Jupyter server calls when it loads the extension.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import MicrolibExtension

    return [{"module": "microlib_kernel.jupyter_server", "app": MicrolibExtension}]
