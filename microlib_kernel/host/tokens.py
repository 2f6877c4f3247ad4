"""The deploy token: what every route that executes code or changes deployments requires."""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

TOKEN_FILE = "deploy-token"


def load_or_create_token(home: Path, configured: str | None) -> str:
    """The configured token, else the one in ``home/deploy-token``, else a new one written there.

    The file is created with mode 0600 (only its owner can read it), atomically, so a
    concurrent reader never sees a half-written token.
    """
    if configured:
        return configured
    path = home / TOKEN_FILE
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    home.mkdir(parents=True, exist_ok=True)
    token = "-"
    while token.startswith("-"):  # "--token -x..." would read as an option on command lines
        token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it meanwhile
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
    finally:
        tmp.unlink(missing_ok=True)
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison (no timing side channel on the token)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def find_deploy_token(
    given: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> str | None:
    """The deploy token a client sends: ``given``, else ``MICROLIB_DEPLOY_TOKEN``, else
    the one in ``.microlib/deploy-token`` under ``cwd`` (a host started there wrote it).

    Returns:
        The token, or ``None`` when none of the three has one.
    """
    if given:
        return given
    env = os.environ if env is None else env
    if env.get("MICROLIB_DEPLOY_TOKEN"):
        return env["MICROLIB_DEPLOY_TOKEN"]
    path = Path(cwd if cwd is not None else os.getcwd()) / ".microlib" / TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
