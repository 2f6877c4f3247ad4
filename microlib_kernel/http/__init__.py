"""The HTTP API: ``create_app(host)`` (Starlette), OpenAPI, the background server, auth."""
