"""The server extension's routes: ``/microlib/hosts`` and ``/microlib/proxy/{kernel_id}/...``.

Both sit behind Jupyter's own authentication (``@web.authenticated``) and its
authorizer (resource ``kernels``: reading a host is ``read``, changing one is
``write``, the deploy routes -- which execute code or change deployments -- are
``execute``, like running a cell). The proxy only reaches hosts registered in the
runtime directory: no URL or port comes from the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import httpx
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import ensure_async, url_path_join
from tornado import web
from tornado.iostream import StreamClosedError

from . import proxy
from .hosts import PROXY_ROOT, describe
from .registry import HostRegistration, find_host, live_hosts

if TYPE_CHECKING:
    from .app import MicrolibExtension

log = logging.getLogger("microlib_kernel.jupyter_server")

#: Seconds the proxy waits for a host's answer (event streams wait without limit).
READ_TIMEOUT = 120.0
CONNECT_TIMEOUT = 5.0

#: Every relayed response is confined: a host's HTML cannot script Jupyter's origin.
CONFINED = "default-src 'none'; frame-ancestors 'self'; sandbox"


class MicrolibMixin:
    """Access to the extension app from a handler."""

    settings: dict[str, Any]

    @property
    def microlib(self) -> MicrolibExtension:
        app: MicrolibExtension = self.settings["microlib_kernel"]
        return app


class HostsHandler(MicrolibMixin, APIHandler):
    """``GET /microlib/hosts``: the live in-kernel hosts, their models and routes."""

    auth_resource = "kernels"

    @web.authenticated
    async def get(self) -> None:
        if not await self._allowed("read"):
            raise web.HTTPError(403, "not allowed to read kernels")
        app = self.microlib
        regs = live_hosts(app.runtime_path)
        kernels = await app.kernels_by_id()
        hosts = await asyncio.gather(
            *(
                describe(
                    app.client,
                    reg,
                    kernels.get(reg.kernel_id),
                    deploy=reg.deploy_token() is not None,
                )
                for reg in regs
            )
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"hosts": list(hosts), "base_url": self.base_url}))

    async def _allowed(self, action: str) -> bool:
        return bool(
            await ensure_async(
                self.authorizer.is_authorized(self, self.current_user, action, "kernels")
            )
        )


class ProxyHandler(MicrolibMixin, JupyterHandler):
    """``/microlib/proxy/{kernel_id}/{path}``: HTTP to a registered host, streamed back."""

    auth_resource = "kernels"
    _relay: asyncio.Future[None] | None = None
    _gone = False

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        # As for Jupyter's own API: a cross-origin request is refused (GET commands
        # exist, and a page elsewhere must not run them with the user's cookie).
        if not self.check_origin():
            raise web.HTTPError(404)

    @web.authenticated
    async def get(self, kernel_id: str, path: str | None = None) -> None:
        await self._proxy(kernel_id)

    @web.authenticated
    async def post(self, kernel_id: str, path: str | None = None) -> None:
        await self._proxy(kernel_id)

    @web.authenticated
    async def put(self, kernel_id: str, path: str | None = None) -> None:
        await self._proxy(kernel_id)

    @web.authenticated
    async def patch(self, kernel_id: str, path: str | None = None) -> None:
        await self._proxy(kernel_id)

    @web.authenticated
    async def delete(self, kernel_id: str, path: str | None = None) -> None:
        await self._proxy(kernel_id)

    # -- the relay ------------------------------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        self.clear_header("Content-Type")
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"error": message}))

    async def _allowed(self, action: str) -> bool:
        return bool(
            await ensure_async(
                self.authorizer.is_authorized(self, self.current_user, action, "kernels")
            )
        )

    async def _proxy(self, kernel_id: str) -> None:
        reg = find_host(kernel_id, self.microlib.runtime_path)
        if reg is None:
            self._fail(404, f"no microlib host is registered for kernel {kernel_id}")
            return
        prefix = url_path_join(self.base_url, PROXY_ROOT, kernel_id)
        path = proxy.host_path_of(self.request.path, prefix)
        method = self.request.method or "GET"
        deploy = proxy.is_deploy_path(path, reg.api_root)
        action = "execute" if deploy else ("read" if method == "GET" else "write")
        if not await self._allowed(action):
            raise web.HTTPError(403, f"not allowed to {action} kernels")
        token: str | None = None
        if deploy:
            token = reg.deploy_token()
            if token is None:
                self._fail(403, _no_token(reg))
                return
        if method == "GET" and path == f"{reg.api_root}/docs":
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.finish(proxy.docs_page(prefix, reg.api_root))
            return
        query = proxy.strip_query_token(self.request.query, self.token)
        url = reg.url + path + (f"?{query}" if query else "")
        headers = proxy.request_headers(
            self.request.headers.get_all(),
            prefix=prefix,
            deploy_token=token,
            # A host with auth on takes its deploy token on every route (http/auth.py).
            api_token=reg.deploy_token() if reg.auth and not deploy else None,
        )
        body = self.request.body if method in ("POST", "PUT", "PATCH", "DELETE") else None
        openapi = method == "GET" and path == f"{reg.api_root}/openapi.json"
        self._relay = asyncio.ensure_future(
            self._forward(reg, method, url, headers, body or None, prefix, openapi=openapi)
        )
        self.microlib.relays.add(self._relay)
        try:
            await self._relay
        except asyncio.CancelledError:
            if self._gone or self.microlib.stopping:
                return  # the browser left, or the server stops: nothing to answer
            raise
        finally:
            self.microlib.relays.discard(self._relay)

    def on_connection_close(self) -> None:
        # The browser went away (e.g. it closed an event stream): stop reading the host.
        self._gone = True
        if self._relay is not None:
            self._relay.cancel()

    async def _forward(
        self,
        reg: HostRegistration,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | None,
        prefix: str,
        *,
        openapi: bool,
    ) -> None:
        streaming = url.split("?", 1)[0].endswith("/events")
        timeout = httpx.Timeout(
            CONNECT_TIMEOUT, connect=CONNECT_TIMEOUT, read=None if streaming else READ_TIMEOUT
        )
        client = self.microlib.client
        try:
            request = client.build_request(
                method, url, headers=headers, content=body, timeout=timeout
            )
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            self._fail(504, f"the host of kernel {reg.kernel_id} did not answer in time")
            return
        except httpx.HTTPError as exc:
            log.info("proxy to %s failed: %s", reg.url, exc)
            self._fail(502, f"cannot reach the host of kernel {reg.kernel_id} at {reg.url}")
            return
        try:
            await self._relay_response(reg, response, prefix, openapi=openapi)
        except (StreamClosedError, httpx.HTTPError) as exc:
            log.debug("proxy stream to %s ended: %s", reg.url, exc)
        finally:
            await response.aclose()

    async def _relay_response(
        self, reg: HostRegistration, response: httpx.Response, prefix: str, *, openapi: bool
    ) -> None:
        self.set_status(response.status_code, response.reason_phrase or "Unknown")
        self.clear_header("Content-Type")
        for name, value in proxy.response_headers(
            response.headers.multi_items(), host_url=reg.url, prefix=prefix
        ):
            self.add_header(name, value)
        self.set_header("Content-Security-Policy", CONFINED)
        if openapi and response.status_code == 200:
            rewritten = proxy.rewrite_openapi(await response.aread(), prefix)
            if rewritten is not None:
                self.clear_header("Content-Encoding")
                self.finish(rewritten)
                return
        flush = response.headers.get("content-type", "").startswith("text/event-stream")
        async for chunk in response.aiter_raw():
            self.write(chunk)
            if flush:
                await self.flush()
        self.finish()


def _no_token(reg: HostRegistration) -> str:
    where = (
        f"{reg.token_env} is set in the kernel but not in the Jupyter server's environment"
        if reg.token_env
        else f"{reg.token_file} cannot be read"
        if reg.token_file
        else "the host did not say where its token is"
    )
    return f"the Jupyter server cannot read the deploy token of this host: {where}"


def handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """The routes (below the server's base URL, which the extension app prepends)."""
    return [
        (r"/microlib/hosts", HostsHandler),
        (rf"/{PROXY_ROOT}/([A-Za-z0-9][A-Za-z0-9_.-]{{0,127}})(/.*)?", ProxyHandler),
    ]
