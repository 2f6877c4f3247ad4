"""The deploy routes in the OpenAPI document: paths, schemas and their security scheme."""

from __future__ import annotations

import copy
from typing import Any

from .openapi_common import COMMON_SCHEMAS, ERROR_TEXT, json_content, ref

VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$"

#: The security scheme of the deploy routes (a token of its own, not an API token).
DEPLOY_SECURITY = {
    "deployToken": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "The deploy token: MICROLIB_DEPLOY_TOKEN, or the one the host wrote to "
            ".microlib/deploy-token (mode 0600)."
        ),
    }
}

_NULLABLE_STRING = {"type": ["string", "null"]}

DEPLOY_SCHEMAS: dict[str, Any] = {
    "DeployRequest": {
        "type": "object",
        "required": ["source"],
        "properties": {
            "kind": {
                "type": "string",
                "enum": ["model", "adapter", "service", "module"],
                "default": "model",
            },
            "name": {
                **_NULLABLE_STRING,
                "description": "Required for adapters, services and modules (an identifier)",
            },
            "source": {"type": "string", "minLength": 1, "description": "Python source text"},
            "version": {
                "anyOf": [{"type": "string", "pattern": VERSION_PATTERN}, {"type": "null"}],
                "description": "Pin the version of every model (default: the next patch)",
            },
        },
        "additionalProperties": False,
    },
    "DeployResult": {
        "type": "object",
        "required": ["published"],
        "properties": {
            "published": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "endpoint"],
                    "properties": {
                        "name": {"type": "string"},
                        "version": _NULLABLE_STRING,
                        "endpoint": _NULLABLE_STRING,
                    },
                },
            }
        },
    },
    "Deployments": {
        "type": "object",
        "required": ["deployments"],
        "properties": {
            "deployments": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["time", "kind", "names", "versions", "who"],
                    "properties": {
                        "time": {"type": "string", "format": "date-time"},
                        "kind": {
                            "type": "string",
                            "description": (
                                "model, adapter, service, module; or rollback, route, unpublish"
                            ),
                        },
                        "names": {"type": "array", "items": {"type": "string"}},
                        "versions": {"type": "array", "items": _NULLABLE_STRING},
                        "who": {"type": "string"},
                    },
                },
            }
        },
    },
    "RollbackRequest": {
        "type": "object",
        "properties": {"version": {"type": "string", "pattern": VERSION_PATTERN}},
        "additionalProperties": False,
    },
    "RoutesRequest": {
        "type": "object",
        "required": ["weights"],
        "properties": {
            "weights": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "number", "minimum": 0},
                "description": 'Version -> weight, e.g. {"1.0.0": 90, "1.0.1": 10}',
            }
        },
        "additionalProperties": False,
    },
    "ModelConfig": copy.deepcopy(COMMON_SCHEMAS["Config"]["properties"]["models"]["items"]),
}
DEPLOY_SCHEMAS["ModelConfig"]["properties"].update(
    {
        "published": {"type": "boolean", "description": "false after an unpublish"},
        "deploys": {"type": "integer", "minimum": 0, "description": "publishes so far"},
    }
)

_DEPLOY_ERRORS = {
    400: "Refused (DeployRefused): the source failed (with its line), defines nothing "
    "publishable, or a schema change the stored rows do not satisfy; nothing changed",
    401: "A missing or wrong deploy token; nothing ran",
    404: "Unknown model or version",
    413: ERROR_TEXT[413],
    500: ERROR_TEXT[500],
}


def _errors(*statuses: int) -> dict[str, Any]:
    out = {}
    for status in statuses:
        schema = ref("InternalError" if status == 500 else "Error")
        out[str(status)] = {"description": _DEPLOY_ERRORS[status], **json_content(schema)}
    return out


def _op(summary: str, ok: dict[str, Any], errors: tuple[int, ...], **extra: Any) -> dict[str, Any]:
    return {
        "tags": ["deploy"],
        "summary": summary,
        "security": [{"deployToken": []}],
        "responses": {**ok, **_errors(*errors)},
        **extra,
    }


_MODEL_PARAM = {
    "name": "model",
    "in": "path",
    "required": True,
    "description": "The model's class name (any case)",
    "schema": {"type": "string"},
}
_ENTRY = {"200": {"description": "The model's /config entry", **json_content(ref("ModelConfig"))}}

DEPLOY_PATHS: dict[str, Any] = {
    "/deploy": {
        "post": _op(
            "Run a model, adapter, service or module source and publish what it defines",
            {"201": {"description": "What was published", **json_content(ref("DeployResult"))}},
            (400, 401, 413, 500),
            requestBody={"required": True, **json_content(ref("DeployRequest"))},
        ),
        "get": _op(
            "The deployment log (publishes, rollbacks, routes, unpublishes)",
            {"200": {"description": "Oldest first", **json_content(ref("Deployments"))}},
            (401, 500),
        ),
    },
    "/deploy/{model}/rollback": {
        "parameters": [_MODEL_PARAM],
        "post": _op(
            "Route all traffic to a version (default: the one before the active one)",
            _ENTRY,
            (400, 401, 404, 413, 500),
            requestBody={"required": False, **json_content(ref("RollbackRequest"))},
        ),
    },
    "/deploy/{model}/routes": {
        "parameters": [_MODEL_PARAM],
        "put": _op(
            "Split traffic between versions by weight (sticky per instance id)",
            _ENTRY,
            (400, 401, 404, 413, 500),
            requestBody={"required": True, **json_content(ref("RoutesRequest"))},
        ),
    },
    "/deploy/{model}": {
        "parameters": [_MODEL_PARAM],
        "delete": _op(
            "Unpublish a model: its endpoints answer 404, its table and data stay",
            _ENTRY,
            (401, 404, 500),
        ),
    },
}
