"""The OpenAPI 3.1 document of the REST surface, generated from :data:`web.rest.ENDPOINTS`
and the pydantic models (whose JSON Schema is OpenAPI 3.1's dialect)."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from web.admin import ADMIN_ENDPOINTS
from web.endpoints import OPENAPI_PATH, PREFIX
from web.group_rest import GROUP_ENDPOINTS
from web.replays import REPLAY_ENDPOINTS
from web.rest import ENDPOINTS

_REASONS = {
    400: "Malformed request (bad JSON)",
    401: "Missing, bad or expired token",
    403: "Not allowed for this user, or (provisioning off) a user livecoach does not know",
    404: "No such resource",
    409: "Not allowed in the session's current state, or conflicts with stored data",
    413: "Body too large",
    415: "Not JSON",
    422: "Invalid field(s); see errors",
    503: "A backing service is failing",
}

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                },
                "required": ["field", "message"],
            },
        },
    },
    "required": ["title", "status"],
}


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@functools.cache
def build_openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
    paths: dict[str, Any] = {}
    for ep in (*ENDPOINTS, *GROUP_ENDPOINTS, *ADMIN_ENDPOINTS, *REPLAY_ENDPOINTS):
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "security": [{"bearer": []}],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in ep.params
            ],
            "responses": {},
        }
        if ep.body is not None:
            op["requestBody"] = {
                "required": ep.method != "POST"
                or ep.path.endswith(
                    ("/update", "/messages", "/read", "/groups", "/members", "/join")
                ),
                "content": {"application/json": {"schema": _ref(ep.body, schemas)}},
            }
        ok: dict[str, Any] = {"description": "No Content" if ep.status == 204 else "OK"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": _ref(ep.response, schemas)}}
        op["responses"][str(ep.status)] = ok
        for code in ep.errors:
            op["responses"][str(code)] = {
                "description": _REASONS.get(code, "Error"),
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        paths.setdefault(PREFIX + ep.path, {})[ep.method.lower()] = op
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi_document",
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    }
    for path, op_kind in (
        ("/healthz", "liveness"),
        ("/readyz", "readiness"),
        ("/metrics", "Prometheus metrics"),
    ):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": op_kind,
                "responses": {"200": {"description": "OK"}},
            }
        }
    paths[PREFIX + "/ws"] = {
        "get": {
            "operationId": "websocket",
            "summary": "WebSocket upgrade; the protocol is described in docs/web.md",
            "responses": {"101": {"description": "Switching Protocols"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "livecoach edge", "version": "1"},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


async def openapi_document(request: web.Request) -> web.Response:
    """``GET /api/v1/openapi.json``."""
    return web.json_response(build_openapi())
