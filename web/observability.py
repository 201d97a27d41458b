"""Prometheus metrics of one edge, in a registry of its own.

A registry per app (not the process-global one) lets tests and the embedded launcher
run several edges in one process without "Duplicated timeseries" errors.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator

from aiohttp import web
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pipeline import tracing
from pipeline.prometheus import LabelledChildren

#: Sample-to-socket latency buckets (seconds): the target is p99 < 50 ms.
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Age of a replayed event when it is written (seconds): a resume after a tunnel or a
#: phone's sleep replays events seconds to minutes old.
_REPLAY_AGE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
#: Gap between two leaderboard frames of a group written to one socket (seconds): the
#: edge sends at most one a second (web.boards), so nothing may fall in 0.95 or below.
_BOARD_GAP_BUCKETS = (0.5, 0.9, 0.95, 0.99, 1.0, 1.01, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0)
#: A leaderboard's hops, from the sample accepted to the frame written (seconds): the
#: agents emit at most once a second and the edge holds a socket's next frame up to 1 s.
_BOARD_HOP_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
    10.0,
)  # fmt: skip
#: The hops of :attr:`EdgeMetrics.board_hop`, in order (docs/groups.md).
BOARD_HOPS = ("ingest_to_emit", "emit_to_read", "read_to_queued", "queued_to_written")
#: REST request duration buckets (seconds).
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
#: The route label of a request no route matched (its path would be unbounded).
UNMATCHED_ROUTE = "unmatched"
#: The methods counted under their own name; any other is counted as :data:`OTHER_METHOD`
#: (a client can send any token as a method: one label set each would grow without end).
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)
OTHER_METHOD = "_OTHER"  # as OpenTelemetry's HTTP conventions name it


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
            "From the edge accepting a sample (ingest_ms) to the live event written to a "
            "socket (replayed events are not counted here)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.replayed_age = Histogram(
            "livecoach_replayed_event_age_seconds",
            "Age (since ingest_ms) of replayed events when written to a socket on resume",
            buckets=_REPLAY_AGE_BUCKETS,
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
            "livecoach_http_requests",
            "HTTP requests answered, by route template, method and status code",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "livecoach_http_request_seconds",
            "Time to answer an HTTP request, by route template and method (a WebSocket "
            "counts until it closes: excluded here)",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "livecoach_http_rate_limited",
            "REST requests refused with 429, by the limit they hit",
            ["scope"],
            registry=r,
        )
        self.board_gap = Histogram(
            "livecoach_leaderboard_gap_seconds",
            "Time between two leaderboard frames of a group written to one socket (from "
            "one write to the next); final: the frame is the group's final board, which "
            "goes out at once and may come sooner",
            ["final"],
            buckets=_BOARD_GAP_BUCKETS,
            registry=r,
        )
        self.board_gap_min = Gauge(
            "livecoach_leaderboard_gap_min_seconds",
            "The smallest time between two leaderboard frames of a group written to one "
            "socket since the edge started (final boards excluded); +Inf: none yet",
            registry=r,
        )
        self.board_gap_min.set(math.inf)
        self.board_hop = Histogram(
            "livecoach_leaderboard_hop_seconds",
            "A leaderboard's way from its newest sample to a socket, by hop: ingest_to_emit "
            "(the sample accepted to the agent sending the board), emit_to_read (to this "
            "edge reading it from live), once per board; read_to_queued (the socket's "
            "pacing hold), queued_to_written (its send queue and the write), per frame "
            "written, for the newest board the frame includes (live boards only)",
            ["hop"],
            buckets=_BOARD_HOP_BUCKETS,
            registry=r,
        )
        self._frames_sent_by_type = LabelledChildren(self.frames_sent)
        self._requests = LabelledChildren(self.http_requests)
        self._durations = LabelledChildren(self.http_duration)
        self._board_gap_live = self.board_gap.labels("false")
        self._board_gap_final = self.board_gap.labels("true")
        self._hops = {hop: self.board_hop.labels(hop) for hop in BOARD_HOPS}
        self._gap_min_s = math.inf

    def frame_sent(self, kind: str) -> None:
        """Count a frame written to a socket (the labelled child is looked up once)."""
        self._frames_sent_by_type(kind).inc()

    def request_answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request (and time it, unless it was a WebSocket's)."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        self._requests(route, method, str(status)).inc()
        if status != 101:  # a WebSocket's time is its whole session
            self._durations(route, method).observe(seconds)

    def board_written(self, gap_s: float, *, final: bool) -> None:
        """Count the gap since the socket's last leaderboard frame of the same group."""
        if final:
            self._board_gap_final.observe(gap_s)
            return
        self._board_gap_live.observe(gap_s)
        if gap_s < self._gap_min_s:
            self._gap_min_s = gap_s
            self.board_gap_min.set(gap_s)

    def board_hop_s(self, hop: str, seconds: float) -> None:
        """One leaderboard hop (one of :data:`BOARD_HOPS`), in seconds (at least 0)."""
        self._hops[hop].observe(max(0.0, seconds))


def route_of(request: web.Request) -> str:
    """The route template that matched (``/api/v1/live/sessions/{session_id}``)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


def server_span(request: web.Request, route: str, method: str) -> Span | None:
    """While tracing is on, a server span for the request (the parent of a posted
    sample's trace); None otherwise, and for a WebSocket: it would be the parent of
    everything the socket does for hours (samples sent over a socket are not traced)."""
    tracer = tracing.tracer()
    if tracer is None or request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    return tracer.start_span(
        f"{method} {route}",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, "http.route": route},
    )


def end_server_span(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


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
