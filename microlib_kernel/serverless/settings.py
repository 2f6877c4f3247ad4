"""The settings of a host running as a Lambda function, and their Lambda defaults."""

from __future__ import annotations

import os
import secrets

from ..config import Settings

#: Where data goes when neither the caller nor ``MICROLIB_DATASOURCE`` says: on Lambda
#: only ``/tmp`` is writable, and it belongs to one instance (see the README).
LAMBDA_DATASOURCE = "duckdb:////tmp/microlib.duckdb"
#: The host's folder (``.microlib`` elsewhere): ``/var/task`` is read-only on Lambda.
LAMBDA_HOME = "/tmp/microlib"
#: A path prefix to strip before routing (a custom domain's base path mapping).
BASE_PATH_ENV = "MICROLIB_LAMBDA_BASE_PATH"


def lambda_settings(datasource: str | None, settings: Settings | None = None) -> Settings:
    """The host settings of a Lambda function.

    The environment is read as for any host, with three Lambda defaults: the
    datasource (:data:`LAMBDA_DATASOURCE`), the home folder (:data:`LAMBDA_HOME`), and
    a random deploy token unless ``MICROLIB_DEPLOY_TOKEN`` is set -- deploying code to
    one instance of a function makes no sense (the others would not get it), so the
    deploy routes refuse everyone, and no token file is written.

    Args:
        datasource: the datasource URL; ``None``: ``MICROLIB_DATASOURCE``, else
            :data:`LAMBDA_DATASOURCE`.
        settings: complete settings to start from instead of the environment.
    """
    env = os.environ
    if settings is None:
        settings = Settings.load(
            datasource=datasource or env.get("MICROLIB_DATASOURCE") or LAMBDA_DATASOURCE,
            home=env.get("MICROLIB_HOME") or LAMBDA_HOME,
        )
    elif datasource is not None:
        settings = settings.replace(datasource=datasource)
    if not settings.deploy_token:
        settings = settings.replace(deploy_token=secrets.token_urlsafe(32))
    return settings


def base_path(value: str | None) -> str:
    """``/api`` from ``api``, ``/api/`` or ``/api``; ``/`` for none (``None``: the env)."""
    text = (value if value is not None else os.environ.get(BASE_PATH_ENV, "")).strip()
    if not text or text == "/":
        return "/"
    return "/" + text.strip("/")
