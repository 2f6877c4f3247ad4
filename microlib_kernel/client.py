"""``HostClient``: the HTTP API from Python, synchronously (httpx).

.. code-block:: python

    with HostClient("http://127.0.0.1:8707") as client:
        order = client.create("orders", {"items": [{"sku": "a"}]})
        client.update("orders", order["id"], {"status": "APPROVED"})
        client.command("orders", order["id"], "summary", roles=["read"])
        client.sql("SELECT status, count(*) FROM orders GROUP BY 1")

Results are the JSON the API answers (dicts and lists). HTTP errors are raised as the
classes of :mod:`microlib_kernel.errors` (the body names the class; the status decides
when it does not), with the body's details: ``ValidationFailed.errors`` is pydantic's
list. The deploy methods (``deploy``, ``rollback``, ``route``) come with the deploy API.
"""

from __future__ import annotations

import builtins
import os
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from . import errors
from .errors import MicrolibError, ServiceUnavailable, ValidationFailed
from .sql_result import SqlResult

DEFAULT_URL = "http://127.0.0.1:8707"
DEFAULT_API_ROOT = "/microlib/api"

_BY_STATUS: dict[int, type[MicrolibError]] = {
    400: ValidationFailed,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    408: errors.QueryTimeout,
    413: errors.PayloadTooLarge,
    429: errors.TooManyRequests,
    502: errors.PortFailed,
    503: errors.ServiceUnavailable,
    504: errors.PortTimeout,
}
_PAGING = {"limit": "__limit", "offset": "__offset", "order": "__order"}


def tls_verify(verify: Any = None) -> Any:
    """How to check a host's TLS certificate: ``verify`` (a CA file, an ``SSLContext``
    or a bool), else ``MICROLIB_CAFILE``, else the system's trust store."""
    if verify is None:
        verify = os.environ.get("MICROLIB_CAFILE") or True
    if isinstance(verify, str | os.PathLike):
        import ssl

        path = os.fspath(verify)
        try:  # httpx wants a context (a path is deprecated there)
            return ssl.create_default_context(cafile=path)
        except (OSError, ssl.SSLError) as exc:
            raise MicrolibError(f"cannot read the CA file {path}: {exc}") from None
    return verify


def resolve_url(url: str | None = None) -> str:
    """The host to talk to: ``url``, else ``MICROLIB_URL``, else ``http://127.0.0.1:8707``."""
    return url or os.environ.get("MICROLIB_URL") or DEFAULT_URL


def error_from_response(response: httpx.Response) -> MicrolibError:
    """The :class:`MicrolibError` an error response stands for."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        body = {"error": f"HTTP {response.status_code} {response.reason_phrase} {text}".strip()}
    details = dict(body)
    message = details.pop("error")
    kind = details.pop("error_type", None)
    cls = getattr(errors, kind, None) if isinstance(kind, str) else None
    if not (isinstance(cls, type) and issubclass(cls, MicrolibError)):
        cls = _BY_STATUS.get(response.status_code, MicrolibError)
    if issubclass(cls, ValidationFailed):
        found = details.pop("errors", None)
        exc: MicrolibError = cls(
            message, errors=found if isinstance(found, list) else None, **details
        )
    else:
        exc = cls(message, **details)
    exc.status = response.status_code  # what the server answered, whatever the class says
    return exc


class HostClient:
    """A synchronous client of a host's HTTP API.

    Args:
        url: the host's base URL (as ``host.url``); ``None``: :func:`resolve_url`.
        token: an API token (``Authorization: Bearer``), when the host has auth on
            (default: ``MICROLIB_TOKEN``); also the deploy token when ``deploy_token`` is
            not given.
        deploy_token: the token the deploy routes need (the host's deploy token).
        api_root: the API's path prefix.
        timeout: seconds per request.
        verify: how to check an ``https`` host's certificate: a CA bundle path, an
            ``ssl.SSLContext``, ``True`` (the system's CAs) or ``False`` (never use it
            beyond tests); default ``MICROLIB_CAFILE``, else the system's CAs.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        api_root: str = DEFAULT_API_ROOT,
        timeout: float = 30.0,
        deploy_token: str | None = None,
        verify: Any = None,
    ) -> None:
        self.url = resolve_url(url).rstrip("/")
        self.api_root = root = api_root.rstrip("/")
        if root and urlsplit(self.url).path.endswith(root):  # given the API URL itself
            self.url = self.url[: -len(root)]
        base = self.url + root
        if token is None:
            token = os.environ.get("MICROLIB_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deploy = deploy_token or token
        self._deploy_headers = {"Authorization": f"Bearer {deploy}"} if deploy else {}
        self._http = httpx.Client(
            base_url=base, headers=headers, timeout=timeout, verify=tls_verify(verify)
        )

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in str(exc):
                raise ServiceUnavailable(
                    f"the TLS certificate of {self.url} is not trusted ({exc}); give the CA "
                    "that signed it: HostClient(verify=CA_FILE), --cafile, or MICROLIB_CAFILE",
                    url=self.url,
                ) from None
            raise ServiceUnavailable(
                f"no host answers at {self.url} ({exc}); start one with `microlib serve` or "
                "give --url / MICROLIB_URL",
                url=self.url,
            ) from None
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"no host answers at {self.url} ({exc}); start one with `microlib serve` or "
                "give --url / MICROLIB_URL",
                url=self.url,
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(method, path, **kwargs).json()

    @staticmethod
    def _path(endpoint: str, *parts: str) -> str:
        return "/models/" + "/".join(quote(str(p), safe="") for p in (endpoint, *parts))

    # -- models -----------------------------------------------------------------------------

    def create(
        self, endpoint: str, data: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Create an instance; with ``idempotency_key`` a replay returns the first one."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json("POST", self._path(endpoint), json=data, headers=headers)

    def get(self, endpoint: str, id: str) -> dict[str, Any]:
        """The instance ``id`` (``NotFound`` if absent)."""
        return self._json("GET", self._path(endpoint, id))

    def list(self, endpoint: str, **filters: Any) -> builtins.list[dict[str, Any]]:
        """Instances matching ``field=value`` filters; ``limit``, ``offset`` and ``order``
        (``"-total"``) page and sort, as in ``Model.list``."""
        return self._json("GET", self._path(endpoint), params=_params(filters))

    def count(self, endpoint: str, **filters: Any) -> int:
        """How many instances match ``filters``."""
        params = {**_params(filters), "__count": "all"}
        return int(self._json("GET", self._path(endpoint), params=params)["total"])

    def update(
        self,
        endpoint: str,
        id: str,
        changes: dict[str, Any],
        *,
        revision: int | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes``; with ``revision``, refuse (``Conflict``) if it moved on."""
        headers = {"If-Match": str(revision)} if revision is not None else {}
        return self._json("PATCH", self._path(endpoint, id), json=changes, headers=headers)

    def delete(self, endpoint: str, id: str) -> dict[str, Any]:
        """Delete ``id``; returns the deleted instance (``Vetoed`` if ``on_delete`` refused)."""
        return self._json("DELETE", self._path(endpoint, id))

    def command(
        self,
        endpoint: str,
        id: str,
        name: str,
        *,
        roles: builtins.list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run command ``name`` with ``kwargs`` as a caller with ``roles``."""
        headers = {"X-Microlib-Roles": ",".join(roles)} if roles else {}
        return self._json("PATCH", self._path(endpoint, id, name), json=kwargs, headers=headers)

    # -- host -------------------------------------------------------------------------------

    def sql(self, query: str, params: Any = None) -> SqlResult:
        """Read-only SQL over the host's model tables."""
        body = self._json("POST", "/sql", json={"sql": query, "params": params})
        return SqlResult(body["columns"], [tuple(r) for r in body["rows"]])

    def models(self) -> builtins.list[dict[str, Any]]:
        """The published models (the ``/config`` entries)."""
        return list(self._json("GET", "/config")["models"])

    def health(self) -> dict[str, Any]:
        """``/health`` (raises ``ServiceUnavailable`` while starting or draining)."""
        return dict(self._json("GET", "/health"))

    # -- deployments (the deploy token) ----------------------------------------------------

    def _deploy(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._json(method, path, headers=self._deploy_headers, **kwargs)
        except MicrolibError as exc:
            if exc.status == 400 and not isinstance(exc, errors.DeployRefused):
                refused = errors.DeployRefused(exc.message, **exc.details)
                refused.status = 400
                raise refused from None
            raise

    def deploy(
        self,
        source: str,
        *,
        kind: str = "model",
        name: str | None = None,
        version: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Run ``source`` on the host and publish what it defines (all or nothing).

        Args:
            source: Python source text (a model, adapter, service or module).
            kind: ``model``, ``adapter``, ``service`` or ``module``.
            name: required for adapters, services and modules.
            version: pin the version of every model (default: the next patch).

        Returns:
            ``[{"name", "version", "endpoint"}]`` (``version`` and ``endpoint`` are
            ``None`` for adapters, services and modules).

        Raises:
            DeployRefused: the host refused it (``line`` in ``details`` when the
                error has a line in the source); nothing changed.
            Unauthorized: a missing or wrong deploy token.
        """
        body: dict[str, Any] = {"kind": kind, "source": source}
        if name is not None:
            body["name"] = name
        if version is not None:
            body["version"] = version
        return list(self._deploy("POST", "/deploy", json=body)["published"])

    def rollback(self, model: str, version: str | None = None) -> dict[str, Any]:
        """Route all of ``model``'s traffic to ``version`` (default: the one before the
        active one); returns its ``/config`` entry."""
        body = {"version": version} if version is not None else {}
        return dict(self._deploy("POST", f"/deploy/{quote(model, safe='')}/rollback", json=body))

    def route(self, model: str, weights: dict[str, float]) -> dict[str, Any]:
        """Split ``model``'s traffic by weight (``{"1.0.0": 90, "1.0.1": 10}``); returns
        its ``/config`` entry."""
        path = f"/deploy/{quote(model, safe='')}/routes"
        return dict(self._deploy("PUT", path, json={"weights": weights}))

    def unpublish(self, model: str) -> dict[str, Any]:
        """Remove ``model``'s endpoints (its data stays); returns its ``/config`` entry."""
        return dict(self._deploy("DELETE", f"/deploy/{quote(model, safe='')}"))

    def deployments(self) -> builtins.list[dict[str, Any]]:
        """The host's deployment log (``time``, ``kind``, ``names``, ``versions``, ``who``)."""
        return list(self._deploy("GET", "/deploy")["deployments"])

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HostClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HostClient {self.url}>"


def _params(filters: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in filters.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple) and key == "order":
            text = ",".join(value)
        else:
            text = str(value)
        out[_PAGING.get(key, key)] = text
    return out


__all__ = ["DEFAULT_URL", "HostClient", "error_from_response", "resolve_url"]
