"""Settings: defaults < pyproject ``[tool.microlib]`` < ``MICROLIB_*`` environment < arguments.

Nothing here runs at import time: :meth:`Settings.load` reads the files and the
environment when a host (or the CLI) asks for it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import MicrolibError

_TRUE = {"1", "true", "yes", "on"}
#: What ``tune_gc`` sets: young collections every 50,000 allocations instead of 700, and
#: full collections ten times rarer. Garbage cycles are still collected.
GC_THRESHOLDS = (50_000, 50, 100)
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything a host can be configured with.

    Attributes:
        datasource: default datasource URL (``duckdb:///.microlib/microlib.duckdb``).
        api_root: path prefix of the HTTP API.
        port: HTTP port of ``serve()``; 0 picks a free one.
        bind: address the HTTP server binds (loopback unless told otherwise).
        serve: start the HTTP server on the first publish (notebooks).
        cache_size: instances kept in the in-memory cache (LRU), across models.
        body_limit: largest request body in bytes (413 above it).
        keep_versions: versions of a model kept for rollback.
        deploy_token: token of the deploy routes; generated into ``home/deploy-token`` if unset.
        secret_key: Fernet key for ``Secret`` fields.
        auth_tokens: ``token -> roles`` for the HTTP API; empty means auth is off.
        home: folder for the default database, the deploy token and deployment records.
        commit_batch: most writes one group commit takes.
        commit_delay: seconds the writer waits for more writes once one arrived (0: none).
        tune_gc: raise CPython's cyclic-GC thresholds for this process (see
            :data:`GC_THRESHOLDS`). A host caching many instances otherwise spends a large
            share of its time in full collections that walk them; this is process-wide,
            so it is off by default and on in ``microlib serve``.
        bus: the bus joining several hosts on one shared datasource
            (``nats://127.0.0.1:4222``, ``redis://127.0.0.1:6379/0``); empty: none.
        bus_cluster: the name hosts of one deployment share on the bus.
        bus_forward: comma-separated glob patterns of local events sent to other hosts.
        bus_accept: comma-separated glob patterns of remote events published here.
        node: this host's id on the bus (default ``hostname:pid:xxxx``).
        lease_ttl: seconds a host's lease on a running flow lasts without renewal, on a
            datasource several hosts share: how long a dead host's flows wait before
            another host resumes them.
        remote_models: models other hosts serve, ``"Customer=http://host:8707,..."``:
            relations to them and adapters (parameter ``customer``) reach them there.
        remote_token: the bearer token sent to those hosts (when their auth is on).
        sql_timeout: seconds a SQL query may run before it is interrupted (0: no limit);
            ``host.sql``, ``%%microlib sql`` and ``POST /sql`` alike.
        sql_max_rows: most rows a ``POST /sql`` answer may have (0: no limit).
        sql_max_bytes: about the most bytes of values a ``POST /sql`` answer may have.
        sql_memory_limit: DuckDB ``memory_limit`` of the SQL database ("" keeps DuckDB's).
        sql_temp_limit: DuckDB ``max_temp_directory_size`` (what a query may spill to disk).
        sql_concurrency: ``POST /sql`` queries one client may run at once (429 above).
        deploy_rate: deploy requests per minute one client may send (0: no limit).
        sse_max: ``/events`` streams open at once (503 above; 0: no limit).
        certfile: TLS certificate chain (PEM) of ``serve()``; HTTPS when set.
        keyfile: TLS private key (PEM) of ``certfile``.
        jwt_jwks_url: JWKS URL of the token issuer; turns JWT auth on.
        jwt_key: a static verification key instead of a JWKS: a PEM public key, or a path
            to one; turns JWT auth on.
        jwt_audience: the ``aud`` every token must carry ("" skips the check).
        jwt_issuer: the ``iss`` every token must carry ("" skips the check).
        jwt_algorithms: accepted signing algorithms (comma-separated; never ``none``).
        jwt_roles_claim: the claim holding the roles (a dotted path, e.g.
            ``realm_access.roles``; a list or a space-separated string).
        jwt_leeway: seconds of clock skew allowed on ``exp``/``nbf``.
        jwks_cache_seconds: how long a fetched JWKS is used before it is fetched again.
        jwks_cafile: CA bundle to verify an ``https`` JWKS URL with (default: the system's).
        auth_scopes: per-model read/write scopes and route scopes: ``scope -> roles``
            (``"read:*=viewer+clerk,write:orders=clerk,sql=analyst"``); checked when
            auth is on.
    """

    datasource: str = "duckdb:///.microlib/microlib.duckdb"
    api_root: str = "/microlib/api"
    port: int = 8707
    bind: str = "127.0.0.1"
    serve: bool = True
    cache_size: int = 100_000
    body_limit: int = 1 << 20
    keep_versions: int = 10
    deploy_token: str | None = None
    secret_key: str | None = None
    auth_tokens: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    home: str = ".microlib"
    commit_batch: int = 5000
    commit_delay: float = 0.0
    tune_gc: bool = False
    bus: str = ""
    bus_cluster: str = "default"
    bus_forward: str = ""
    bus_accept: str = "*"
    node: str = ""
    lease_ttl: float = 10.0
    remote_models: str = ""
    remote_token: str | None = None
    sql_timeout: float = 30.0
    sql_max_rows: int = 100_000
    sql_max_bytes: int = 32 << 20
    sql_memory_limit: str = "2GB"
    sql_temp_limit: str = "2GB"
    sql_concurrency: int = 2
    deploy_rate: int = 30
    sse_max: int = 100
    certfile: str | None = None
    keyfile: str | None = None
    jwt_jwks_url: str | None = None
    jwt_key: str | None = None
    jwt_audience: str = ""
    jwt_issuer: str = ""
    jwt_algorithms: str = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,ES512,EdDSA"
    jwt_roles_claim: str = "roles"
    jwt_leeway: float = 30.0
    jwks_cache_seconds: float = 300.0
    jwks_cafile: str | None = None
    auth_scopes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cwd: str = ""

    @classmethod
    def load(
        cls,
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build settings from every layer; ``overrides`` left ``None`` are ignored.

        Raises:
            MicrolibError: a setting has a value of the wrong type, or is unknown.
        """
        base = Path(cwd) if cwd is not None else Path.cwd()
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        values.update(_from_pyproject(base / "pyproject.toml"))
        values.update(_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise MicrolibError(
                f"unknown setting(s) {', '.join(unknown)}; valid ones: {', '.join(sorted(known))}"
            )
        values["cwd"] = str(base.resolve())
        return cls(**{k: _coerce(known[k], v) for k, v in values.items()})

    def path(self, relative: str | os.PathLike[str]) -> Path:
        """A path relative to the working directory these settings were loaded in."""
        p = Path(relative)
        return p if p.is_absolute() else Path(self.cwd or os.getcwd()) / p

    @property
    def home_path(self) -> Path:
        """The ``.microlib`` folder (not created here)."""
        return self.path(self.home)

    @property
    def jwt_enabled(self) -> bool:
        """Whether API requests need a JWT (a JWKS URL or a static key is set)."""
        return bool(self.jwt_jwks_url or self.jwt_key)

    @property
    def auth_enabled(self) -> bool:
        """Whether API requests need a bearer token (static tokens or JWTs)."""
        return bool(self.auth_tokens) or self.jwt_enabled

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _from_pyproject(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MicrolibError(f"cannot read [tool.microlib] from {path}: {exc}") from exc
    section = data.get("tool", {}).get("microlib", {})
    return {k.replace("-", "_"): v for k, v in section.items()}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in env.items():
        if key.startswith("MICROLIB_"):
            name = key[len("MICROLIB_") :].lower()
            if name in _ENV_NAMES:
                out[name] = value
    return out


_ENV_NAMES = {f.name for f in fields(Settings)} - {"cwd"}


def _coerce(f: dataclasses.Field[Any], value: Any) -> Any:
    kind = str(f.type)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected true/false, got {value!r}")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        if f.name in ("auth_tokens", "auth_scopes"):
            return _parse_tokens(value)
        if kind.startswith("str"):
            return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise MicrolibError(f"setting {f.name}: {exc}") from exc
    return value


def _parse_tokens(value: Any) -> dict[str, tuple[str, ...]]:
    """``"tok1=admin+write,tok2=read"`` or a mapping ``{token: [roles]}``."""
    if isinstance(value, Mapping):
        return {str(k): tuple(str(r).strip() for r in v) for k, v in value.items()}
    out: dict[str, tuple[str, ...]] = {}
    for item in str(value).split(","):
        if not item.strip():
            continue
        token, _, roles = item.partition("=")
        out[token.strip()] = tuple(r.strip() for r in roles.split("+") if r.strip())
    return out
