"""``%load_ext microlib_kernel``: the in-kernel host and the ``%microlib`` magics.

Loading is cheap and idempotent: it opens the host on its datasource (the HTTP server
waits for the first publish) and registers one magic. Unloading is its mirror: it
stops the live displays and the server, closes the host (the database file and its
lock are released) and removes the magic. ``%reload_ext microlib_kernel`` therefore
leaves no server, thread or file handle behind, and opens a new host on the same
datasource.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from IPython.core.error import UsageError

from ..errors import MicrolibError, ServiceUnavailable
from ..host.exit import close_at_exit
from .magics import MicrolibMagics
from .session import NotebookSession
from .targets import TARGET_ENV

WAIT_ENV = "MICROLIB_TARGET_WAIT"

_REGISTRY_KEY = MicrolibMagics.__name__

#: The folder each shell's last host resolved its datasource in (kept across reloads, so
#: ``%reload_ext`` after a ``%cd`` reopens the same database).
_CWD_ATTR = "_microlib_cwd"


def session_of(ip: Any) -> NotebookSession | None:
    """The notebook session of a shell, if the extension is loaded."""
    magics = ip.magics_manager.registry.get(_REGISTRY_KEY)
    return magics.session if isinstance(magics, MicrolibMagics) else None


def current_host() -> Any:
    """The in-kernel :class:`~microlib_kernel.Host` of the running notebook.

    Raises:
        UsageError: not in IPython, or the extension is not loaded.
    """
    from IPython import get_ipython

    ip = get_ipython()
    session = session_of(ip) if ip is not None else None
    if session is None:
        raise UsageError("the microlib extension is not loaded: run %load_ext microlib_kernel")
    return session.host


def load_ipython_extension(ip: Any) -> None:
    """Create the in-kernel host, register ``%microlib`` and print one line about it.

    With ``MICROLIB_TARGET_URL`` in the environment (a notebook run by ``microlib
    deploy``), the session connects to that host at once: every ``%%microlib`` cell
    publishes there, never here. The in-kernel host then only validates, on
    ``memory://`` unless ``MICROLIB_DATASOURCE`` says otherwise, so it never takes the
    lock of a database file the target host may hold.
    """
    if session_of(ip) is not None:
        return
    target = os.environ.get(TARGET_ENV)
    datasource = "memory://" if target and not os.environ.get("MICROLIB_DATASOURCE") else None
    try:
        session = NotebookSession.open(getattr(ip, _CWD_ATTR, None), datasource)
    except MicrolibError as exc:
        raise UsageError(f"microlib: {exc.message}") from None
    setattr(ip, _CWD_ATTR, session.settings.cwd)
    ip.register_magics(MicrolibMagics(ip, session))
    close_at_exit(session)
    print(session.banner())
    if target:
        connect_to_target(session, target)


def connect_to_target(session: NotebookSession, url: str) -> None:
    """Connect to ``MICROLIB_TARGET_URL``; if it does not answer yet, stay connected
    anyway (cells then fail with the reason), never fall back to the in-kernel host.

    A host that is still starting (``microlib serve`` starts the deployment's kernel
    while it opens its datasource) is waited for, up to ``MICROLIB_TARGET_WAIT``
    seconds (default 0: a host that is not there is reported at once).
    """
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV) or 0)
    while True:
        try:
            target = session.connect(url)
            break
        except ServiceUnavailable:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            exc: MicrolibError = ServiceUnavailable(f"no host answers at {url}")
        except MicrolibError as error:
            exc = error
        session.connect(url, check=False)
        print(
            f"microlib: {exc.message}; %%microlib cells will fail until it answers", file=sys.stderr
        )
        return
    print(f"microlib: %%microlib cells publish to {target.api_url} ({TARGET_ENV})")


def unload_ipython_extension(ip: Any) -> None:
    """Stop live displays and the server, close the host, remove ``%microlib``."""
    magics = ip.magics_manager.registry.pop(_REGISTRY_KEY, None)
    if not isinstance(magics, MicrolibMagics):
        return
    for kind in ("line", "cell"):
        table = ip.magics_manager.magics[kind]
        bound = table.get("microlib")
        if getattr(bound, "__self__", None) is magics:
            del table["microlib"]
    magics.session.close()
