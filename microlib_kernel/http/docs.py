"""The browsable API docs page: Swagger UI, served from files shipped in the package.

Decision: vendor Swagger UI (Apache-2.0, ``static/swagger-ui/VENDORED.md``) rather than
write a page of our own. It renders OpenAPI 3.1, lets users try every route with
"Try it out" (with a bearer token through "Authorize" when auth is on), and is what
most API users already know. It is served by the host itself, so the page works
offline; the online validator badge is turned off so the page makes no outside call.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER_UI_VERSION = "5.35.0"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" type="image/png" href="{static}/swagger-ui/favicon-32x32.png">
  <link rel="stylesheet" href="{static}/swagger-ui/swagger-ui.css">
  <style>html {{ overflow-y: scroll; }} body {{ margin: 0; background: #fafafa; }}</style>
</head>
<body>
  <div id="docs"></div>
  <script src="{static}/swagger-ui/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{openapi}",
      dom_id: "#docs",
      deepLinking: true,
      tryItOutEnabled: true,
      persistAuthorization: true,
      displayRequestDuration: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    }});
  </script>
</body>
</html>
"""


def docs_page(api_root: str, title: str = "microlib API") -> str:
    """The HTML of the docs page for an API under ``api_root``."""
    root = html.escape(api_root, quote=True)
    return _PAGE.format(
        title=html.escape(title), static=f"{root}/docs/static", openapi=f"{root}/openapi.json"
    )


def docs_routes(api_root: str) -> list[Route | Mount]:
    """``{api_root}/docs``, its static files, and redirects to it from ``/`` and the root."""
    page = docs_page(api_root)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    async def to_docs(request: Request) -> Response:
        return RedirectResponse(f"{api_root}/docs", status_code=307)

    routes: list[Route | Mount] = [
        Route(f"{api_root}/docs", docs, methods=["GET"]),
        Mount(f"{api_root}/docs/static", app=StaticFiles(directory=STATIC), name="docs-static"),
        Route("/", to_docs, methods=["GET"]),
    ]
    if api_root:
        routes.append(Route(api_root, to_docs, methods=["GET"]))
        routes.append(Route(f"{api_root}/", to_docs, methods=["GET"]))
    return routes
