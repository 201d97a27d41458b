"""Prometheus metrics of one edge, in a registry of its own.

A registry per app (not the process-global one) lets tests and the embedded launcher
run several edges in one process without "Duplicated timeseries" errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Sample-to-socket latency buckets (seconds): the target is p99 < 50 ms.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "livecoach_ws_connections", "Open WebSocket connections", registry=r
        )
        self.frames_sent = Counter(
            "livecoach_ws_frames_sent", "Frames sent to sockets", ["type"], registry=r
        )
        self.frames_received = Counter(
            "livecoach_ws_frames_received", "Frames received from sockets", registry=r
        )
        self.coalesced = Counter(
            "livecoach_ws_coalesced",
            "Metrics frames replaced by a newer one (slow client)",
            registry=r,
        )
        self.closes = Counter(
            "livecoach_ws_closes", "Connections closed by the edge", ["code"], registry=r
        )
        self.resumes = Counter(
            "livecoach_ws_resumes", "Channel resumes by outcome", ["outcome"], registry=r
        )
        self.replayed = Counter(
            "livecoach_ws_replayed_events", "Events replayed on resume", registry=r
        )
        self.latency = Histogram(
            "livecoach_sample_to_socket_seconds",
            "From the edge accepting a sample (ingest_ms) to the event written to a socket",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_lag = Gauge(
            "livecoach_live_stream_lag",
            "Entries of 'live' not yet read by this edge, per partition",
            ["partition"],
            registry=r,
        )
        self.backend_errors = Counter(
            "livecoach_backend_errors", "Redis and PostgreSQL errors", ["service"], registry=r
        )
        self.samples_accepted = Counter(
            "livecoach_samples_accepted", "Samples appended to 'samples'", registry=r
        )
        self.http_requests = Counter(
            "livecoach_http_requests", "REST requests by status class", ["status"], registry=r
        )
        self.rate_limited = Counter(
            "livecoach_http_rate_limited",
            "REST requests refused with 429, by the limit they hit",
            ["scope"],
            registry=r,
        )
        self._frames_sent_by_type: dict[str, Any] = {}

    def frame_sent(self, kind: str) -> None:
        """Count a frame written to a socket (the labelled child is looked up once)."""
        child = self._frames_sent_by_type.get(kind)
        if child is None:
            child = self._frames_sent_by_type[kind] = self.frames_sent.labels(kind)
        child.inc()


def metrics_response(registry: CollectorRegistry) -> web.Response:
    """The registry in Prometheus' text format."""
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@contextlib.asynccontextmanager
async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[int]:
    """A listener of its own for ``GET /metrics`` (nothing else), without a token.

    For ``LIVECOACH_METRICS_PORT``: on loopback by default, so only this machine's
    Prometheus (or an operator's tunnel) reads it. Yields the port it listens on.
    """

    async def handler(request: web.Request) -> web.Response:
        return metrics_response(registry)

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
