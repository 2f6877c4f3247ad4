"""Remote models: a model another host serves, reached over its HTTP API (issue 16).

``MICROLIB_REMOTE_MODELS="Customer=http://customers.internal:8707"`` makes ``Customer``
a remote model on this host:

* a relation whose target is ``Customer`` (``relation("Customer", "many_to_one", ...)``)
  resolves through the other host when no local version of ``Customer`` is published;
* an adapter can declare a keyword parameter ``customer`` (the model's name, lower case)
  and receives a :class:`RemoteModel`: ``await customer.get(id)``, ``find``, ``count``,
  ``create``, ``update``, ``delete``.

Errors are the same classes as local calls (the other host's error body names its class:
``NotFound``, ``Conflict``, ``ValidationFailed``...); a host that cannot be reached is
``ServiceUnavailable`` (503), never a hang: every call has a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict

from ..client import error_from_response
from ..errors import MicrolibError, NotFound, ServiceUnavailable

if TYPE_CHECKING:
    from ..config import Settings
    from .adapters import ServiceRegistry

DEFAULT_API_ROOT = "/microlib/api"


class RemoteInstance(BaseModel):
    """An instance another host answered with: its fields as attributes, read-only.

    ``model`` names the remote model; ``to_json()`` gives the answer as it came.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The instance as the other host answered it."""
        return dict(self.__pydantic_extra__ or {})

    def __repr__(self) -> str:
        data = self.to_json()
        return f"<remote {data.get('id')!r} rev {data.get('revision')}>"


def parse_remote_models(text: str) -> dict[str, str]:
    """``"Customer=http://a:8707, Invoice=http://b:8707"`` -> ``{name: url}``.

    Raises:
        MicrolibError: an item is not ``Name=http(s)://...``.
    """
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, _, url = item.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not name.isidentifier() or not url.startswith(("http://", "https://")):
            raise MicrolibError(
                f"remote_models: {item.strip()!r} is not Name=http://host:port "
                "(e.g. Customer=http://customers.internal:8707)"
            )
        out[name] = url
    return out


class RemoteModel:
    """A model served by another host, called over its HTTP API (async).

    Args:
        name: the model's class name on the other host.
        url: the other host's base URL.
        token: a bearer token for its API (when its auth is on).
        timeout: seconds each call may take.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        api_root: str = DEFAULT_API_ROOT,
    ) -> None:
        self.name = name
        self.url = url
        self.api = f"{url}{api_root}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(base_url=self.api, headers=headers, timeout=timeout)
        self._endpoint: str | None = None
        self._fields: set[str] | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<RemoteModel {self.name} at {self.url}>"

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"{self.name} is served by {self.url}, which cannot be reached: "
                f"{type(exc).__name__}",
                model=self.name,
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def _describe(self) -> tuple[str, set[str]]:
        """The endpoint and fields of the model, from the other host's ``/config``."""
        if self._endpoint is None or self._fields is None:
            async with self._lock:
                if self._endpoint is None:
                    config = (await self._call("GET", "/config")).json()
                    for entry in config.get("models", []):
                        if str(entry.get("name", "")).lower() == self.name.lower():
                            self._endpoint = str(entry["endpoint"])
                            schema = entry.get("schema") or {}
                            self._fields = set(schema.get("properties") or {})
                            break
                    else:
                        raise NotFound(f"{self.url} does not publish a model {self.name}")
        assert self._endpoint is not None and self._fields is not None
        return self._endpoint, self._fields

    async def endpoint(self) -> str:
        """Where the other host serves the model (``customers``)."""
        return (await self._describe())[0]

    async def has_field(self, name: str) -> bool:
        """Whether the remote model has field ``name`` (unknown schema: assume it has)."""
        fields = (await self._describe())[1]
        return not fields or name in fields

    def _path(self, endpoint: str, *parts: str) -> str:
        return "/".join([f"/models/{quote(endpoint)}", *(quote(p, safe="") for p in parts)])

    async def get(self, id: str) -> RemoteInstance:
        """The instance ``id``. Raises ``NotFound`` as a local ``get`` does."""
        endpoint = await self.endpoint()
        return RemoteInstance(**(await self._call("GET", self._path(endpoint, id))).json())

    async def find(self, limit: int | None = None, **filters: Any) -> list[RemoteInstance]:
        """Instances whose fields equal ``filters`` (the API's list query)."""
        endpoint = await self.endpoint()
        params = {k: _param(v) for k, v in filters.items()}
        if limit is not None:
            params["__limit"] = str(limit)
        items = (await self._call("GET", self._path(endpoint), params=params)).json()
        return [RemoteInstance(**item) for item in items]

    async def count(self, **filters: Any) -> int:
        """How many instances match ``filters``."""
        endpoint = await self.endpoint()
        params = {k: _param(v) for k, v in filters.items()} | {"__count": "all"}
        body = (await self._call("GET", self._path(endpoint), params=params)).json()
        return int(body["total"])

    async def create(self, data: Mapping[str, Any]) -> RemoteInstance:
        """Create an instance there (``ValidationFailed`` as a local create)."""
        endpoint = await self.endpoint()
        response = await self._call("POST", self._path(endpoint), json=dict(data))
        return RemoteInstance(**response.json())

    async def update(
        self, id: str, changes: Mapping[str, Any], *, revision: int | None = None
    ) -> RemoteInstance:
        """Change ``id`` there; with ``revision``, a stale one is ``Conflict``."""
        endpoint = await self.endpoint()
        headers = {"If-Match": f'"{revision}"'} if revision is not None else {}
        response = await self._call(
            "PATCH", self._path(endpoint, id), json=dict(changes), headers=headers
        )
        return RemoteInstance(**response.json())

    async def delete(self, id: str) -> None:
        """Delete ``id`` there."""
        endpoint = await self.endpoint()
        await self._call("DELETE", self._path(endpoint, id))

    async def close(self) -> None:
        await self._client.aclose()


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def remote_models(settings: Settings, services: ServiceRegistry) -> dict[str, RemoteModel]:
    """The models ``settings.remote_models`` names, by lower-case name; each is also
    registered as a service, so adapters reach it by a keyword parameter of its name."""
    out = {}
    for name, url in parse_remote_models(settings.remote_models).items():
        remote = RemoteModel(name, url, token=settings.remote_token)
        out[name.lower()] = remote
        services.register(name.lower(), remote)
    return out
