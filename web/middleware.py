"""The edge's one middleware: every request counted and timed (and traced), held to the
REST rate limits, given a deadline for its body, and whatever it raised answered as a
problem document.

Each concern lives with its kind (:mod:`web.observability`, :mod:`web.ratelimit`,
:mod:`web.problems`); this module only puts them in order. They were four middlewares:
each a coroutine, aiohttp's ``partial`` and a suspended frame for every request in
flight and for every open WebSocket's whole life. On a saturated edge that was a few
per cent of its CPU per post, and most of the young objects its garbage collector walks
(docs/benchmarks.md); as one coroutine the order is also plain to read:

1. route and start time taken, a server span started while tracing is on;
2. the rate limits (paths ``counted`` accepts; a 429 before the handler runs);
3. the body deadline armed, unless the body is all there already;
4. the handler; an HTTP error of 4xx/5xx or any exception becomes a problem answer, a
   body that timed out a 408 on a closed connection;
5. the request counted by route, method and status (499: the client went away first).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from opentelemetry import trace

from web.observability import EdgeMetrics, end_server_span, route_of, server_span
from web.problems import BodyTimeout, body_deadline, body_timeout_response, error_response
from web.ratelimit import RestLimits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_NO_SPAN = contextlib.nullcontext()


def make_edge_middleware(
    metrics: EdgeMetrics,
    limits: RestLimits,
    *,
    counted: Callable[[str], bool],
    body_timeout_s: float,
    on_service_error: Callable[[Exception], None],
) -> Any:
    """The middleware (install it alone, or outermost): ``counted`` says which paths
    the rate limits apply to; ``on_service_error`` is called with each failure of a
    backing service (a 503) before it is logged."""

    @web.middleware
    async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route, method = route_of(request), request.method
        span = server_span(request, route, method)
        started = time.perf_counter()
        status = 500
        deadline = None
        try:
            with _NO_SPAN if span is None else trace.use_span(span, end_on_exit=False):
                try:
                    if counted(request.path):
                        unverified = limits.check(request)
                        if unverified is not None:
                            await unverified
                    deadline = body_deadline(request, body_timeout_s)
                    response = await handler(request)
                except BodyTimeout as exc:
                    response = await body_timeout_response(request, exc)
                except web.HTTPException as exc:
                    if exc.status < 400:
                        raise  # a redirect
                    response = error_response(exc, request, on_service_error)
                except Exception as exc:
                    response = error_response(exc, request, on_service_error)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # nginx's "client closed request"
            raise
        finally:
            if deadline is not None:
                deadline.cancel()
            metrics.request_answered(route, method, status, time.perf_counter() - started)
            if span is not None:
                end_server_span(span, status)

    return edge_middleware
