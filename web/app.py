"""The aiohttp application factory of the edge.

:func:`create_app` builds an app whose resources are owned by ``cleanup_ctx``
contexts, in order: Redis client and PostgreSQL pool, the two batching producers
(``samples`` and ``live``), then the background tasks (the ``live`` tailer, the
presence listener, the lag gauge). On shutdown they close in reverse: sockets first
(aiohttp closes them), tasks cancelled, producers flushed, pools closed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from pipeline import redaction
from pipeline.constants import GROUPS_TOPIC, LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.retention import apply_topic_retentions
from pipeline.settings import Settings
from pipeline.transport.clients import redis_client
from pipeline.transport.streams import declare_topic
from pipeline.transport.tasks import cancel_and_wait
from web.access import Access
from web.actions import Actions
from web.admin import add_admin_routes
from web.auth import TokenVerifier
from web.directory import Directory
from web.edge import EDGE, Edge, EdgeConfig
from web.endpoints import OPENAPI_PATH
from web.fanout import LiveTailer
from web.group_rest import add_group_routes
from web.groups import GroupActions
from web.middleware import make_edge_middleware
from web.observability import EdgeMetrics, metrics_response
from web.openapi import openapi_document
from web.presence import Presence
from web.problems import RETRY_AFTER_S, Problem, backend_of
from web.producer import BatchingProducer
from web.ratelimit import RateLimiter, RestLimits
from web.replays import add_replay_routes
from web.rest import add_routes
from web.revocation import AccessListener
from web.static import add_dashboard_routes
from web.store import Store
from web.ws import websocket_handler

log = logging.getLogger(__name__)


def _urls(settings: Settings, redis_url: str | None, database_url: str | None) -> tuple[str, str]:
    redis_url = redis_url or settings.redis_url
    database_url = database_url or settings.database_url
    if not redis_url or not database_url:
        raise ValueError(
            "the edge needs LIVECOACH_REDIS_URL and LIVECOACH_DATABASE_URL "
            "(or run it through `livecoach web`, which resolves embedded servers)"
        )
    return redis_url, database_url


def create_app(
    settings: Settings,
    *,
    redis_url: str | None = None,
    database_url: str | None = None,
    config: EdgeConfig | None = None,
) -> web.Application:
    """A ready-to-run edge; URLs default to the settings' (they must be resolved)."""
    redis_url, database_url = _urls(settings, redis_url, database_url)
    # Tokens in request lines (``?token=``) never reach a log, whoever set logging up.
    redaction.install_on_loggers()
    config = config or EdgeConfig()
    metrics = EdgeMetrics()
    edge = Edge(settings, config, metrics, TokenVerifier(settings))

    def count_service_error(exc: Exception) -> None:
        metrics.backend_errors.labels(backend_of(exc)).inc()

    limits = RestLimits(
        RateLimiter(config.rest_user_rate, config.rest_user_burst),
        RateLimiter(config.rest_address_rate, config.rest_address_burst),
        edge.verifier,
        exempt_loopback=config.rest_address_exempt_loopback,
        on_limited=lambda scope: metrics.rate_limited.labels(scope).inc(),
    )
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[
            make_edge_middleware(
                metrics,
                limits,
                counted=_rate_limited_path,
                body_timeout_s=config.body_timeout_s,
                on_service_error=count_service_error,
            )
        ],
    )
    app[EDGE] = edge

    async def backends(app: web.Application) -> AsyncIterator[None]:
        # A blocking pool: under a burst (a reconnect storm) commands wait for a free
        # connection instead of failing with "Too many connections".
        edge.redis = redis_client(
            redis_url,
            retry_policy=Retry(
                ExponentialBackoff(cap=0.1, base=0.05), retries=config.redis_retries
            ),
            max_connections=config.redis_connections,
            blocking_timeout_s=10,
            socket_connect_timeout=config.redis_connect_timeout_s,
        )
        edge.pool = AsyncConnectionPool(
            database_url, min_size=1, max_size=config.pg_connections, open=False
        )
        await edge.pool.open(wait=True, timeout=30)
        edge.store = Store(edge.pool)
        edge.access = Access(edge.store)
        edge.directory = Directory(edge.store, provision=settings.provision_users)
        await declare_topic(edge.redis, SAMPLES_TOPIC, settings.samples_partitions)
        await declare_topic(edge.redis, LIVE_TOPIC, settings.live_partitions)
        # Partitioned as the agents' store topic (by samples_partitions).
        await declare_topic(edge.redis, GROUPS_TOPIC, settings.samples_partitions)
        await apply_topic_retentions(edge.redis, settings)
        try:
            yield
        finally:
            await edge.verifier.aclose()
            await edge.pool.close()
            await edge.redis.aclose()

    async def producers(app: web.Application) -> AsyncIterator[None]:
        redis = edge.need_redis()
        samples = BatchingProducer(
            redis,
            SAMPLES_TOPIC,
            settings.samples_partitions,
            linger_ms=config.linger_ms,
            durable_ack_ms=settings.durable_ack_ms,
        )
        live = BatchingProducer(
            redis, LIVE_TOPIC, settings.live_partitions, linger_ms=config.linger_ms
        )
        groups = BatchingProducer(
            redis, GROUPS_TOPIC, settings.samples_partitions, linger_ms=config.linger_ms
        )
        edge.actions = Actions(edge.need_store(), edge.need_access(), samples, live, metrics)
        edge.groups = GroupActions(edge.need_store(), edge.need_access(), edge.actions, groups)
        try:
            yield
        finally:
            await samples.aclose()
            await live.aclose()
            await groups.aclose()

    async def background(app: web.Application) -> AsyncIterator[None]:
        from web.ws import apply_access_change, heartbeat_loop, recheck_all_access

        redis = edge.need_redis()
        edge.tailer = LiveTailer(
            redis,
            edge.hub,
            settings.live_partitions,
            metrics,
            block_ms=config.tailer_block_ms,
            recent_per_partition=config.recent_per_partition,
            on_session_event=edge.need_access().observe_live_event,
        )
        await edge.tailer.start_positions()
        edge.presence = Presence(
            redis, edge.hub, ttl_s=config.presence_ttl_s, grace_s=config.presence_grace_s
        )

        async def on_access_change(event: dict[str, Any]) -> None:
            await apply_access_change(edge, event)

        async def on_resync() -> None:
            await recheck_all_access(edge)

        edge.access_listener = AccessListener(
            database_url, on_event=on_access_change, on_resync=on_resync
        )
        tasks = [
            asyncio.create_task(edge.access_listener.run(), name="access-listener"),
            asyncio.create_task(edge.tailer.run(), name="live-tailer"),
            asyncio.create_task(edge.presence.listen(), name="presence-listener"),
            asyncio.create_task(_every(5.0, edge.tailer.measure_lag), name="lag-gauge"),
            asyncio.create_task(heartbeat_loop(edge), name="heartbeat"),
        ]
        # Serve once revocations can be heard (bounded: /readyz says if it is not so).
        try:
            await asyncio.wait_for(edge.access_listener.listening.wait(), 10.0)
        except TimeoutError:
            log.warning("access listener not listening yet; /readyz reports it")
        try:
            yield
        finally:
            await cancel_and_wait(*tasks)
            await edge.presence.aclose()

    app.cleanup_ctx.extend([backends, producers, background])
    app.on_shutdown.append(_close_sockets)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/api/v1/live/ws", websocket_handler)
    add_routes(app)
    add_admin_routes(app)
    add_group_routes(app)
    add_replay_routes(app, settings, redis_url=redis_url, database_url=database_url)
    app.router.add_get(OPENAPI_PATH, openapi_document)
    add_dashboard_routes(app)  # /dashboard, /static/{name}: a middleware
    return app


def _rate_limited_path(path: str) -> bool:
    """REST paths count against the REST limits; the socket upgrade has its own."""
    return path.startswith("/api/") and path != "/api/v1/live/ws"


async def _every(interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await job()
        except Exception as exc:  # a gauge must never take the edge down
            log.debug("periodic job failed: %s", exc)
        await asyncio.sleep(interval_s)


async def _close_sockets(app: web.Application) -> None:
    edge = app[EDGE]
    # At once: each close may wait close_timeout_s for a client that does not answer.
    await asyncio.gather(*(conn.close(1001, "edge shutting down") for conn in edge.connections))


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers (no dependency checks, so a Redis blip restarts nothing)."""
    return web.json_response({"status": "ok"})


#: How long /readyz waits for each backing service.
READY_TIMEOUT_S = 2.0


async def _probe(edge: Edge, backend: str, check: Callable[[], Awaitable[Any]]) -> str:
    """``"ok"`` or why not, within READY_TIMEOUT_S however the service hangs.

    The check runs as a task that is not awaited past the timeout: cancelling a
    psycopg query on a frozen PostgreSQL waits for the server (``asyncio.wait_for``
    took over 6 s to give up). At most one check per backend is in flight: while one
    hangs, later calls report it instead of piling up tasks."""
    pending = edge.probes.get(backend)
    if pending is not None and not pending.done():
        return "failing: the previous check has not answered"
    task = asyncio.ensure_future(check())
    edge.probes[backend] = task
    task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
    done, _ = await asyncio.wait({task}, timeout=READY_TIMEOUT_S)
    if not done:
        task.cancel()  # it ends when the service answers; nobody waits for it
        return f"failing: no answer within {READY_TIMEOUT_S:g} s"
    exc = task.exception()
    return "ok" if exc is None else f"failing: {type(exc).__name__}"


async def readyz(request: web.Request) -> web.Response:
    """Ready: Redis and PostgreSQL answer (each within 2 s), the live tailer is reading
    and the access listener hears link and role changes."""
    edge = request.app[EDGE]
    checks: dict[str, Any] = {}
    redis_check, pg_check = await asyncio.gather(
        _probe(edge, "redis", edge.need_redis().ping),
        _probe(edge, "postgresql", edge.need_store().ping),
    )
    for backend, result in (("redis", redis_check), ("postgresql", pg_check)):
        checks[backend] = result
        if result != "ok":
            edge.metrics.backend_errors.labels(backend).inc()
    checks["live_tailer"] = "ok" if edge.tailer is not None and edge.tailer.healthy else "starting"
    listener = edge.access_listener
    checks["access_listener"] = (
        "ok" if listener is not None and listener.listening.is_set() else "reconnecting"
    )
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
        headers=None if ready else {"Retry-After": str(RETRY_AFTER_S)},
    )


async def metrics_handler(request: web.Request) -> web.Response:
    """``/metrics`` on the API port: for the bearer of ``LIVECOACH_METRICS_TOKEN`` only.

    Without a token configured it is not there (404): the metrics are served on the
    separate loopback listener of ``LIVECOACH_METRICS_PORT`` instead, if at all.
    """
    edge = request.app[EDGE]
    expected = edge.settings.metrics_token
    if expected is None:
        raise web.HTTPNotFound()
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, f"Bearer {expected.get_secret_value()}".encode()):
        raise Problem(
            401,
            "Unauthorized",
            "expected 'Authorization: Bearer <LIVECOACH_METRICS_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return metrics_response(edge.metrics.registry)
