"""``livecoach web``: run one edge in the foreground until SIGINT/SIGTERM.

With no Redis/PostgreSQL configured, the embedded servers are started (and migrated)
first, as for ``livecoach up``; with URLs configured, several edges can run side by
side against the same servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvloop
from aiohttp import web

from pipeline import tracing
from pipeline.gcpolicy import defer_full_collections, full_collections
from pipeline.settings import Settings
from web.observability import serve_metrics

log = logging.getLogger(__name__)


#: Connections the kernel queues before the edge accepts them (capped by
#: net.core.somaxconn). aiohttp's default, 128, overflowed when thousands of clients
#: reconnected at once after a drop: the rest waited out TCP's SYN retries (1, 3, 7,
#: 15, 31 s...), and the last of 5,000 resumed after up to 110 s.
LISTEN_BACKLOG = 4096


def serve(settings: Settings, *, redis_url: str, database_url: str, host: str, port: int) -> None:
    """Run an edge on resolved servers until SIGINT/SIGTERM (for ``livecoach up`` too)."""
    from web.app import create_app

    tracing.configure("livecoach-web")  # on only if OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = create_app(settings, redis_url=redis_url, database_url=database_url)
    app.cleanup_ctx.append(_garbage_policy)
    if settings.metrics_port:
        app.cleanup_ctx.append(_metrics_listener)
    print(f"livecoach edge on http://{host}:{port}/api/v1/live", flush=True)
    # uvloop, as the workers: socket writes and the loop's own bookkeeping were a third
    # of a busy edge's time on asyncio's loop.
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            print=None,
            handle_signals=True,
            backlog=LISTEN_BACKLOG,
            loop=uvloop.new_event_loop(),
        )
    finally:
        tracing.shutdown()  # export the spans still buffered


async def _metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """``/metrics`` on ``LIVECOACH_METRICS_HOST:LIVECOACH_METRICS_PORT`` (see settings)."""
    from web.edge import EDGE

    edge = app[EDGE]
    host, port = edge.settings.metrics_host, edge.settings.metrics_port
    async with serve_metrics(edge.metrics.registry, host, port):
        log.info("metrics on http://%s:%d/metrics", host, port)
        yield


async def _garbage_policy(app: web.Application) -> AsyncIterator[None]:
    """Full garbage collections on a timer once the edge is up (see pipeline.gcpolicy)."""
    defer_full_collections()
    task = asyncio.create_task(full_collections(), name="full-gc")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run_edge(settings: Settings, *, host: str | None = None, port: int | None = None) -> int:
    from pipeline.migrations import migrate
    from pipeline.runtime import resolved_services

    host = host or settings.web_host
    port = settings.web_port if port is None else port
    with resolved_services(settings) as urls:
        if settings.database_url is None:
            migrate(urls.database_url)  # embedded: nobody else will migrate it
        serve(
            settings,
            redis_url=urls.redis_url,
            database_url=urls.database_url,
            host=host,
            port=port,
        )
    return 0
