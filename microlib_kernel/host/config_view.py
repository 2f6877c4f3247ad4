"""The ``/config`` view of published models (``Host.config``, ``GET /config``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..store.registry import redact_url

if TYPE_CHECKING:
    from .context import HostContext
    from .ports import PortRunner
    from .registry import ModelEntry


class ConfigView:
    """Renders models as their ``/config`` entries (ports with their breaker state).

    Args:
        ctx: the host's context.
        ports: the port runner (each port's live status).
    """

    def __init__(self, ctx: HostContext, ports: PortRunner) -> None:
        self.ctx = ctx
        self.ports = ports

    def entry(self, entry: ModelEntry) -> dict[str, Any]:
        """A model's ``/config`` entry."""
        active = entry.versions.get(entry.active or "") or entry.latest()
        spec = active.spec
        return {
            "name": entry.name,
            "endpoint": entry.endpoint,
            "active": entry.active,
            "published": entry.published,
            "versions": list(entry.versions),
            "routes": dict(entry.routes),
            "deploys": entry.deploys,
            "schema": spec.schema,
            "fields": {n: f.to_json() for n, f in spec.fields.items()},
            "ports": {
                n: {**p.to_json(), **self.ports.status(entry.name, n)}
                for n, p in spec.ports.items()
            },
            "relations": {n: r.to_json() for n, r in spec.relations.items()},
            "commands": {n: c.to_json() for n, c in spec.commands.items()},
            # A URL's password never leaves the host.
            "datasource": redact_url(self.ctx.repositories.datasource_for(spec.datasource)),
        }

    def all(self) -> dict[str, Any]:
        """``{"models": [...]}``: every published model (what ``GET /config`` answers)."""
        return {"models": [self.entry(e) for e in self.ctx.registry.entries()]}
