"""``%microlib connect URL``: a notebook that publishes to a host in another process.

While connected, ``%%microlib`` cells still run in the notebook (so its names hold the
classes and functions, and mistakes show as normal tracebacks), but nothing is
published to the in-kernel host: the cell's *source* goes to the remote host through
``POST /deploy`` (:meth:`HostClient.deploy`), which runs it in a fresh module there.
``status``, ``models``, ``rollback``, ``route``, ``unpublish`` and ``sql`` act on the
remote host. :class:`RemoteTarget` has the shape of the in-kernel one
(:class:`~.targets.Target`), so the session swaps one for the other.

A kernel whose environment has ``MICROLIB_TARGET_URL`` connects when the extension
loads (how ``microlib deploy`` runs a notebook with papermill), and every successful
remote publish appends one JSON line to the file named by ``MICROLIB_DEPLOY_RECORD``:
``{"name", "version", "endpoint", "kind", "previous": {"active", "routes"} | null}``,
where ``previous`` is the model's state just before the publish (``null`` if it was not
published) -- what a deployment runner needs to roll back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from ..client import HostClient
from ..errors import DeployRefused, MicrolibError, Unauthorized
from ..host.deploy import Published
from ..host.tokens import find_deploy_token
from .targets import RECORD_ENV, TARGET_ENV

if TYPE_CHECKING:
    from ..sql_result import SqlResult
    from .displays import PublishedDisplay

__all__ = ["RECORD_ENV", "TARGET_ENV", "RemoteTarget"]


class RemoteTarget:
    """A remote host the notebook's cells are deployed to (a :class:`~.targets.Target`).

    Args:
        client: a client holding the deploy token.
        record: the file that gets one JSON line per successful publish (or ``None``).
    """

    def __init__(self, client: HostClient, record: str | None = None) -> None:
        self.client = client
        self.record = record

    @classmethod
    def connect(
        cls,
        url: str,
        token: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        check: bool = True,
        api_token: str | None = None,
        cafile: str | None = None,
    ) -> RemoteTarget:
        """Connect to ``url``; the token is ``token``, else ``MICROLIB_DEPLOY_TOKEN``, else
        ``.microlib/deploy-token`` under ``cwd``.

        Args:
            check: make sure the host answers and takes the token (``GET /deploy``).
            api_token: the bearer token of the API routes (``/config``, ``/sql``) when
                the host has auth on: else ``MICROLIB_TOKEN``, else the deploy token
                (which a host with auth on accepts on every route).
            cafile: CA bundle that signed an ``https`` host's certificate (default:
                ``MICROLIB_CAFILE``, else the system's CAs).

        Raises:
            MicrolibError: no host answers, or it refuses the token (with ``check``).
        """
        env = os.environ if env is None else env
        found = find_deploy_token(token, env=env, cwd=cwd)
        api = api_token or env.get("MICROLIB_TOKEN") or found
        verify = cafile or env.get("MICROLIB_CAFILE") or None
        client = HostClient(url, api, deploy_token=found, verify=verify)
        target = cls(client, env.get(RECORD_ENV) or None)
        if check:
            try:
                target.client.deployments()
            except Unauthorized as exc:
                target.close()
                how = "" if found else " (no token: give --token or set MICROLIB_DEPLOY_TOKEN)"
                raise MicrolibError(f"{target.url} refused the deploy token{how}: {exc}") from None
            except MicrolibError:
                target.close()
                raise
        return target

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def api_url(self) -> str:
        return self.client.url + self.client.api_root

    # -- publishing a cell (validated in the kernel, published here from its source) -----

    def publish_models(
        self, classes: list[type[Any]], source: str, version: str | None
    ) -> list[Published]:
        """Deploy a model cell's source; ``classes`` name the models (for the record)."""
        names = [c.__name__ for c in classes]
        return self.deploy(source, kind="model", version=version, models=names)

    def published_display(
        self, published: list[Published], classes: list[type[Any]]
    ) -> PublishedDisplay:
        """A display of what a connected cell published on the remote host."""
        from .displays import PublishedDisplay, published_models

        urls: dict[str, str | None] = {
            p.endpoint: self.endpoint_url(p.endpoint) for p in published if p.endpoint
        }
        note = f"deployed to {self.url} (%microlib disconnect publishes here again)"
        models = published_models(published, classes, urls)
        return PublishedDisplay(models, f"{self.api_url}/openapi.json", note)

    def publish_adapters(
        self, name: str, functions: Mapping[str, Callable[..., Any]], source: str
    ) -> str:
        self.deploy(source, kind="adapter", name=name)
        bound = ", ".join(f"{name}.{f}" for f in functions)
        return f"adapters deployed to {self.url}: {bound}"

    def publish_service(self, name: str, obj: Any, source: str) -> str:
        self.deploy(source, kind="service", name=name)
        return f"service {name} deployed to {self.url}"

    def publish_module(self, name: str, source: str) -> str:
        self.deploy(source, kind="module", name=name)
        return (
            f"module microlib_modules.{name} deployed to {self.url} and importable here "
            f"(also bound as {name})"
        )

    def deploy(
        self,
        source: str,
        *,
        kind: str,
        name: str | None = None,
        version: str | None = None,
        models: Sequence[str] = (),
    ) -> list[Published]:
        """Deploy ``source``; ``models`` are the class names it defines (for the record).

        Raises:
            DeployRefused: the remote host refused it (the message gives the line).
            MicrolibError: the host cannot be reached, or refuses the token.
        """
        previous = self._previous(models) if kind == "model" and self.record else {}
        try:
            published = self.client.deploy(source, kind=kind, name=name, version=version)
        except DeployRefused as exc:
            line = exc.details.get("line")
            if isinstance(line, int) and f"line {line}" not in exc.message:
                message = f"{exc.message} (line {line} of the cell)"
                raise DeployRefused(message, **exc.details) from None
            raise
        out = [Published(p["name"], p["version"], p["endpoint"]) for p in published]
        if self.record:
            self._write_record(out, kind, previous)
        return out

    def _previous(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        wanted = {n.lower() for n in names}
        return {
            m["name"].lower(): {"active": m["active"], "routes": m["routes"]}
            for m in self.client.models()
            if m["name"].lower() in wanted
        }

    def _write_record(
        self, published: list[Published], kind: str, previous: dict[str, dict[str, Any]]
    ) -> None:
        assert self.record is not None
        lines = [
            json.dumps(
                {
                    "name": p.name,
                    "version": p.version,
                    "endpoint": p.endpoint,
                    "kind": kind,
                    "previous": previous.get(p.name.lower()),
                }
            )
            + "\n"
            for p in published
        ]
        path = Path(self.record)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())

    # -- versions and SQL ---------------------------------------------------------------

    def rollback(self, model: str, version: str | None) -> dict[str, Any]:
        return self.client.rollback(model, version)

    def route(self, model: str, weights: dict[str, float]) -> dict[str, Any]:
        return self.client.route(model, weights)

    def unpublish(self, model: str) -> dict[str, Any]:
        return self.client.unpublish(model)

    def sql(self, query: str, params: dict[str, Any] | None) -> SqlResult:
        return self.client.sql(query, to_jsonable_python(params) if params else None)

    # -- what the host holds ----------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """``/config`` entries of the remote models, each with its row ``count``."""
        out = []
        for item in self.client.models():
            try:
                item["count"] = self.client.count(item["endpoint"])
            except MicrolibError:
                item["count"] = None
            out.append(item)
        return out

    def ports_report(self) -> list[dict[str, Any]]:
        """Rows like ``host.ports.report()`` from the ``/config`` entries."""
        return [
            {"model": m["name"], "port": name, **port}
            for m in self.client.models()
            for name, port in (m.get("ports") or {}).items()
        ]

    def keeps_serving(self, names: list[str]) -> str:
        """``"Order 1.0.2 keeps serving on URL"`` for the models among ``names`` that serve."""
        try:
            models = self.client.models()
        except MicrolibError:
            return ""
        wanted = {n.lower() for n in names}
        found = [f"{m['name']} {m['active']}" for m in models if m["name"].lower() in wanted]
        return f"{', '.join(found)} keeps serving on {self.url}" if found else ""

    def endpoint_url(self, endpoint: str) -> str:
        return f"{self.api_url}/models/{endpoint}"

    def status_title(self) -> str:
        return f"microlib remote host · API {self.api_url} (%microlib disconnect)"

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"<RemoteTarget {self.url}>"
