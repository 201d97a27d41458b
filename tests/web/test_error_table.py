"""Issue 15, structure: the edge's errors share one base and one table (pure unit
tests: no server needed)."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import web
from pipeline.errors import LivecoachError, ServiceError
from web.errors import EdgeError
from web.problems import RULES, rule_for, translate
from web.protocol import CLOSE_FORBIDDEN, CLOSE_INTERNAL, CLOSE_UNAUTHORIZED

WEB = Path(web.__file__).parent


def _web_exceptions() -> list[type[BaseException]]:
    found = []
    for path in sorted(WEB.glob("*.py")):
        module = importlib.import_module(f"web.{path.stem}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def test_every_error_of_the_edge_has_the_one_base() -> None:
    errors = _web_exceptions()
    assert len(errors) >= 9, errors
    strays = [e for e in errors if not issubclass(e, EdgeError | ServiceError)]
    # web.client's are the Python client's, raised to its callers (livecoach errors,
    # never translated by the edge).
    client = [e for e in strays if e.__module__ == "web.client"]
    assert client and all(issubclass(e, LivecoachError) for e in client), client
    assert [e.__qualname__ for e in strays if e.__module__ != "web.client"] == []
    assert issubclass(EdgeError, LivecoachError)


def test_no_error_is_matched_by_its_class_name() -> None:
    """``type(exc).__name__ == "StoreError"`` breaks silently on a rename: no
    comparison in web/ may hold an error class's name as a string."""
    names = {e.__name__ for e in _web_exceptions()} | {
        e.__name__ for e in (LivecoachError, ServiceError, *LivecoachError.__subclasses__())
    }
    offenders = []
    for path in sorted(WEB.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Constant) and inner.value in names:
                    offenders.append(f"{path.name}:{node.lineno}: {inner.value}")
    assert offenders == []


@pytest.mark.parametrize(
    ("exc", "status", "ws_code", "auth_close"),
    [
        (importlib.import_module("web.auth").AuthError("bad token"), 401, "unauthorized",
         CLOSE_UNAUTHORIZED),
        (importlib.import_module("web.access").Forbidden("no"), 403, "forbidden", CLOSE_FORBIDDEN),
        (importlib.import_module("web.access").NotFound("gone"), 404, "not_found", CLOSE_INTERNAL),
        (importlib.import_module("web.actions").Conflict("stopped"), 409, "conflict",
         CLOSE_INTERNAL),
        (importlib.import_module("web.store").StoreError("down"), 503, "unavailable",
         CLOSE_INTERNAL),
    ],
)  # fmt: skip
def test_one_row_answers_http_and_the_socket(
    exc: Exception, status: int, ws_code: str, auth_close: int
) -> None:
    rule = rule_for(exc)
    assert rule is not None
    problem = translate(exc)
    assert problem is not None
    assert (problem.status, rule.ws_code, rule.ws_auth_close) == (status, ws_code, auth_close)


def test_every_row_is_reachable() -> None:
    """A row shadowed by an earlier, broader one would never be used."""
    kinds = [k if isinstance(k, tuple) else (k,) for k, _ in RULES]
    for i, row in enumerate(kinds):
        for earlier in kinds[:i]:
            for kind in row:
                assert not issubclass(kind, earlier), (kind, earlier)
