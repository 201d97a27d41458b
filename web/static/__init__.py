"""The dashboard and the JavaScript client, served by the edge.

``GET /dashboard`` is ``dashboard.html``; ``GET /static/{name}`` (and
``/static/vendor/{name}``) serves the files of this folder (and of its ``vendor/``)
whose suffix is listed in :data:`CONTENT_TYPES` (so never this module). Both
are answered by a middleware, outside the router (see :func:`dashboard_middleware`). Every
answer carries a strict Content-Security-Policy (scripts, styles and connections from
this origin only: the page works offline, with no CDN), ``nosniff``, no framing and
``Referrer-Policy: no-referrer``. A token in the query (``/dashboard?token=...``) is
moved to the fragment by a 303 redirect, which browsers keep to themselves: the
page reads ``#token=`` only, so a token reaches no further log or history entry than
the one request that carried it (whose access-log line is redacted). The files are
not fingerprinted, so they are revalidated on every use (``Cache-Control: no-cache``
with an ETag; a match answers 304).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HERE = Path(__file__).resolve().parent

#: The one sub-folder served: third-party browser libraries, vendored as files.
SUB_FOLDER = "vendor"

CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def _file_response(request: web.Request, path: Path) -> web.Response:
    try:
        body = path.read_bytes()
    except OSError:
        raise web.HTTPNotFound() from None
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**SECURITY_HEADERS, "ETag": etag}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=body,
        content_type=CONTENT_TYPES[path.suffix],
        charset="utf-8",
        headers=headers,
    )


def _token_to_fragment(request: web.Request) -> web.HTTPSeeOther:
    """A redirect of ``/dashboard?token=T&rest`` to ``/dashboard?rest#token=T``."""
    query = request.rel_url.query.copy()
    token = query.popall("token")[-1]
    fragment = urlencode({"token": token})
    target = request.rel_url.with_query(query).with_fragment(None)
    return web.HTTPSeeOther(f"{target}#{fragment}", headers=SECURITY_HEADERS)


async def _serve(request: web.Request) -> web.Response | None:
    path = request.path
    if path in ("/dashboard", "/dashboard/"):
        if "token" in request.rel_url.query:
            raise _token_to_fragment(request)
        return _file_response(request, HERE / "dashboard.html")
    if not path.startswith("/static/"):
        return None
    name = path.removeprefix("/static/")
    parts = name.split("/")
    # This folder and its vendor/ folder (third-party libraries, see vendor/README.md):
    # no other separators, no dot files, only the listed kinds (never .py).
    if len(parts) == 2 and parts[0] == SUB_FOLDER:
        parts = parts[1:]
    if len(parts) != 1 or not parts[0] or "\\" in name or parts[0].startswith("."):
        raise web.HTTPNotFound()
    file = HERE / name
    if file.suffix not in CONTENT_TYPES:
        raise web.HTTPNotFound()
    return _file_response(request, file)


@web.middleware
def dashboard_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Serve ``/dashboard`` and ``/static/{name}`` (GET, HEAD) before the router.

    They are kept out of the router on purpose: the router is the API, documented
    route for route by the OpenAPI document (a test holds the two equal); these are
    files for browsers, not API.
    """
    # Not a coroutine: the API's requests (a thousand devices' posts a second) are
    # handed on without a frame of this middleware.
    if request.method in ("GET", "HEAD") and request.path.startswith(("/dashboard", "/static/")):
        return _serve_or(request, handler)
    return handler(request)


async def _serve_or(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _serve(request)
    return response if response is not None else await handler(request)


def add_dashboard_routes(app: web.Application) -> None:
    """Install :func:`dashboard_middleware` (call before the app starts)."""
    app.middlewares.append(dashboard_middleware)


__all__ = ["SECURITY_HEADERS", "add_dashboard_routes", "dashboard_middleware"]
