"""The OpenAPI document matches the routes the app really serves."""

from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _route_set(app: Any) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        out.add((route.method.lower(), path))
    return out


async def test_openapi_document_matches_the_router(edge: Any) -> None:
    async with edge.session.get(edge.url("/api/v1/openapi.json")) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    served = _route_set(edge.server.app)
    assert documented == served
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == names, (path, params)
            for ref in _refs(op):
                assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            found += _refs(value)
        return found
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []
