"""The parts of the OpenAPI document that do not depend on the models."""

from __future__ import annotations

from typing import Any

ERROR_TEXT = {
    400: "Bad request: invalid data, query or arguments (pydantic details in errors)",
    401: "A missing or unknown API token",
    403: "The caller's roles do not allow this command (or scope, with auth_scopes)",
    404: "Unknown endpoint, id, version, relation, command or port",
    408: "The SQL query ran past its time limit and was stopped",
    409: "The instance changed since the revision given in If-Match",
    413: "The request body is over the limit",
    429: "Too many requests from this client (see Retry-After)",
    500: "Internal error: a generic message and an id to find the logged traceback",
    502: "The port's adapter failed",
    503: "The port's circuit breaker is open (or the host is not ready)",
    504: "The port's adapter timed out",
}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def error_responses(statuses: set[int]) -> dict[str, Any]:
    """Documented error responses for these statuses."""
    out = {}
    for status in sorted(statuses):
        schema = ref("InternalError" if status == 500 else "Error")
        out[str(status)] = {"description": ERROR_TEXT[status], **json_content(schema)}
    return out


COMMON_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error: a message, the error class, and details.",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "error_type": {"type": "string"},
            "error_id": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {"type": "object"},
                "description": "pydantic's validation details",
            },
        },
        "additionalProperties": True,
    },
    "InternalError": {
        "type": "object",
        "required": ["error", "error_id"],
        "properties": {
            "error": {"type": "string", "const": "internal error"},
            "error_type": {"type": "string"},
            "error_id": {"type": "string", "description": "Find the traceback in the log"},
        },
        "additionalProperties": False,
    },
    "Count": {
        "type": "object",
        "description": '{"total": n}, with the counted field and value for field:value',
        "required": ["total"],
        "properties": {"total": {"type": "integer", "minimum": 0}},
        "additionalProperties": True,
    },
    "SqlQuery": {
        "type": "object",
        "required": ["sql"],
        "properties": {
            "sql": {
                "type": "string",
                "pattern": r"\S",
                "description": "One read-only query (DuckDB dialect)",
            },
            "params": {
                "anyOf": [{"type": "object"}, {"type": "array"}, {"type": "null"}],
                "description": "{name: value} for $name, or a list for ?",
            },
        },
        "additionalProperties": False,
    },
    "SqlResult": {
        "type": "object",
        "required": ["columns", "rows"],
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array"}},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "starting", "draining", "closed"]},
            "version": {"type": "string"},
            "models": {"type": "integer"},
            "error": {"type": "string"},
        },
    },
    "Config": {
        "type": "object",
        "required": ["models"],
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "endpoint", "active", "versions", "routes", "schema"],
                    "properties": {
                        "name": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "active": {"type": ["string", "null"]},
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "routes": {"type": "object"},
                        "schema": {"type": "object"},
                        "ports": {"type": "object"},
                        "relations": {"type": "object"},
                        "commands": {"type": "object"},
                        "datasource": {"type": "string"},
                    },
                },
            }
        },
    },
}


def _admin(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tags": ["host"], "summary": summary, "responses": responses, **extra}


ADMIN_PATHS: dict[str, Any] = {
    "/config": {
        "get": _admin(
            "Published models: versions, routes, schemas, ports, relations, commands",
            {"200": {"description": "The models", **json_content(ref("Config"))}},
        )
    },
    "/health": {
        "get": _admin(
            "Liveness and readiness",
            {
                "200": {"description": "Serving", **json_content(ref("Health"))},
                "503": {"description": "Starting or draining", **json_content(ref("Health"))},
            },
        )
    },
    "/events": {
        "get": _admin(
            "Domain events as Server-Sent Events (a stream that does not end)",
            {
                "200": {
                    "description": "id/event/data frames; data is the event as JSON",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": {"description": ERROR_TEXT[400], **json_content(ref("Error"))},
            },
            parameters=[
                {
                    "name": "pattern",
                    "in": "query",
                    "required": False,
                    "description": "fnmatch glob over event names, e.g. order.*",
                    "schema": {"type": "string", "maxLength": 200},
                }
            ],
        )
    },
    "/sql": {
        "post": _admin(
            "Read-only SQL over the model tables",
            {
                "200": {"description": "Columns and rows", **json_content(ref("SqlResult"))},
                **error_responses({400, 413, 500}),
            },
            requestBody={"required": True, **json_content(ref("SqlQuery"))},
        )
    },
}
