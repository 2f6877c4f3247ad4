"""The version registry: every published version of every model, and its routes.

Swapping what serves a model is a single assignment on the host loop, so it is atomic:
a request resolves its :class:`ModelVersion` once, at its start, and finishes on it
even if a publish lands meanwhile. The registry is serialisable
(:meth:`VersionRegistry.to_json`) so another process can learn the active versions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DeployRefused, NotFound

if TYPE_CHECKING:
    from ..domain.model import Model
    from ..domain.spec import ModelSpec

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]+)?$")
FIRST_VERSION = "1.0.0"


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.2.3"`` -> ``(1, 2, 3)``.

    Raises:
        DeployRefused: not ``MAJOR.MINOR.PATCH``.
    """
    m = _SEMVER.match(text) if isinstance(text, str) else None
    if not m:
        raise DeployRefused(f"version {text!r} is not MAJOR.MINOR.PATCH (like 1.2.0)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@dataclass(eq=False)
class ModelVersion:
    """One published version of a model: its class, spec and where it came from."""

    name: str
    version: str
    cls: type[Model]
    spec: ModelSpec
    published_at: dt.datetime
    source: str | None = None
    runtime: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "published_at": self.published_at.isoformat(),
            "spec": self.spec.to_json(),
            "source": self.source,
        }


@dataclass(eq=False)
class ModelEntry:
    """A model's versions, its routes (version -> weight) and counters."""

    name: str
    endpoint: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    routes: dict[str, float] = field(default_factory=dict)
    published: bool = True
    deploys: int = 0
    #: The random source of weighted picks (the registry's; tests seed it).
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def active(self) -> str | None:
        """The version serving by default: the heaviest route (newest on a tie)."""
        if not self.published or not self.routes:
            return None
        order = list(self.versions)
        return max(
            self.routes, key=lambda v: (self.routes[v], order.index(v) if v in order else -1)
        )

    def latest(self) -> ModelVersion:
        return next(reversed(self.versions.values()))

    def get(self, version: str) -> ModelVersion:
        """A version by number.

        Raises:
            NotFound: no such version (the message lists the known ones).
        """
        mv = self.versions.get(version)
        if mv is None:
            raise NotFound(
                f"{self.name} has no version {version!r}; versions: {', '.join(self.versions)}",
                versions=list(self.versions),
            )
        return mv

    def pick(self, instance_id: str | None = None) -> ModelVersion:
        """The version that serves ``instance_id`` (sticky), or a weighted pick for none."""
        if len(self.routes) == 1:
            return self.versions[next(iter(self.routes))]
        total = sum(self.routes.values())
        if instance_id is None:
            point = self.rng.random() * total
        else:
            digest = hashlib.blake2b(instance_id.encode(), digest_size=8).digest()
            point = int.from_bytes(digest, "big") / 2**64 * total
        for version, weight in self.routes.items():
            if point < weight:
                return self.versions[version]
            point -= weight
        return self.versions[next(reversed(self.routes))]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "active": self.active,
            "published": self.published,
            "versions": list(self.versions),
            "routes": dict(self.routes),
            "deploys": self.deploys,
        }


class VersionRegistry:
    """All models by case-insensitive name and by endpoint.

    Args:
        keep: versions kept per model for rollback (routed versions are never dropped).
        rng: the random source of weighted route picks (default: a new ``Random``).
    """

    def __init__(self, keep: int = 10, rng: random.Random | None = None) -> None:
        self.keep = max(1, keep)
        self.rng = rng or random.Random()
        self._by_name: dict[str, ModelEntry] = {}

    def entries(self, *, published_only: bool = True) -> list[ModelEntry]:
        return [e for e in self._by_name.values() if e.published or not published_only]

    def find(self, name: str) -> ModelEntry | None:
        return self._by_name.get(name.lower()) if isinstance(name, str) else None

    def get(self, name: str) -> ModelEntry:
        """A model by class name (any case).

        Raises:
            NotFound: it was never published (the message lists the published ones).
        """
        entry = self.find(name)
        if entry is None:
            raise NotFound(
                f"no model named {name!r}; published: "
                + (", ".join(e.name for e in self.entries()) or "none"),
            )
        return entry

    def by_endpoint(self, endpoint: str) -> ModelEntry | None:
        """The published model serving ``endpoint``, if any."""
        for entry in self._by_name.values():
            if entry.published and entry.endpoint == endpoint:
                return entry
        return None

    def next_version(self, name: str, pinned: str | None = None) -> str:
        """The version a publish of ``name`` gets (pinned, or the next patch).

        Raises:
            DeployRefused: a malformed or already published pinned version.
        """
        entry = self.find(name)
        if pinned is not None:
            parse_version(pinned)
            if entry is not None and pinned in entry.versions:
                raise DeployRefused(
                    f"{entry.name} {pinned} is already published; pin a new version or omit it "
                    "to get the next patch",
                )
            return pinned
        if entry is None or not entry.versions:
            return FIRST_VERSION
        major, minor, patch = max(parse_version(v) for v in entry.versions)
        return f"{major}.{minor}.{patch + 1}"

    def check_endpoint(self, name: str, endpoint: str) -> None:
        """Refuse an endpoint another model already serves."""
        for entry in self._by_name.values():
            if (
                entry.endpoint == endpoint
                and entry.name.lower() != name.lower()
                and entry.published
            ):
                raise DeployRefused(
                    f"endpoint {endpoint!r} is served by {entry.name}; give {name} another "
                    f"endpoint or unpublish {entry.name} first"
                )

    def add(self, mv: ModelVersion) -> ModelEntry:
        """Register a version and route all traffic to it (evergreen)."""
        entry = self.find(mv.name)
        if entry is None:
            entry = ModelEntry(mv.name, mv.spec.endpoint, rng=self.rng)
            self._by_name[mv.name.lower()] = entry
        entry.name = mv.name
        entry.endpoint = mv.spec.endpoint
        entry.versions[mv.version] = mv
        entry.routes = {mv.version: 100.0}
        entry.published = True
        entry.deploys += 1
        self._prune(entry)
        return entry

    def _prune(self, entry: ModelEntry) -> list[ModelVersion]:
        dropped = []
        while len(entry.versions) > self.keep:
            oldest = next(v for v in entry.versions if v not in entry.routes)
            dropped.append(entry.versions.pop(oldest))
        return dropped

    def unpublish(self, name: str) -> ModelEntry:
        entry = self.get(name)
        entry.published = False
        return entry

    def rollback(self, name: str, version: str | None = None) -> ModelEntry:
        """Route everything to ``version`` (default: the one before the active one).

        Raises:
            NotFound: unknown model or version.
            DeployRefused: there is no earlier version.
        """
        entry = self.get(name)
        if version is None:
            order = list(entry.versions)
            active = entry.active
            idx = order.index(active) if active in order else len(order)
            if idx == 0:
                raise DeployRefused(f"{entry.name} has no version before {active} to roll back to")
            version = order[idx - 1]
        entry.get(version)
        entry.routes = {version: 100.0}
        entry.published = True
        return entry

    def route(self, name: str, weights: Mapping[str, float]) -> ModelEntry:
        """Split traffic between versions by weight (sticky per instance id).

        Raises:
            NotFound: an unknown version.
            DeployRefused: weights that are not positive numbers.
        """
        entry = self.get(name)
        if not weights:
            raise DeployRefused("route needs at least one version=weight")
        clean: dict[str, float] = {}
        for version, weight in weights.items():
            entry.get(version)
            try:
                w = float(weight)
            except (TypeError, ValueError):
                raise DeployRefused(
                    f"weight of {version} must be a number, got {weight!r}"
                ) from None
            if not w >= 0:
                raise DeployRefused(f"weight of {version} must be >= 0, got {weight!r}")
            if w > 0:
                clean[version] = w
        if not clean:
            raise DeployRefused("at least one weight must be above 0")
        entry.routes = clean
        entry.published = True
        return entry

    def to_json(self) -> dict[str, Any]:
        """The registry as data: entries with their versions' specs and sources."""
        return {
            "models": [
                {**e.to_json(), "history": [mv.to_json() for mv in e.versions.values()]}
                for e in self._by_name.values()
            ]
        }
