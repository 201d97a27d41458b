"""Prometheus metrics of one Faust worker, served on ``/metrics`` of its web server.

A Faust sensor (:class:`WorkerMetrics`) counts what Faust tells every sensor (entries
in, commits, rebalances); the agents of :mod:`agents.app` add what only they know
(events out, processing time, errors). Lag is computed when Prometheus scrapes, from
the worker's committed offsets and the partitions' highwaters, the same two figures
``XINFO GROUPS`` subtracts on Redis 7 (see ``Consumer._mirror``).

A registry per app (not the process-global one), as the edge does
(:mod:`web.observability`), so tests can run several apps in one process.

Faust's own ``PrometheusMonitor`` was not used: it is a ``Monitor`` that keeps
per-event bookkeeping on the hot path, does not see the live agent's events (it acks
them itself, and sends through the producer directly) and has no lag per partition.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust
from faust.sensors import Sensor
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from pipeline.prometheus import LabelledChildren

#: Processing time buckets (seconds) of one event (a batch read of ``samples``).
_PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Commit latency buckets (seconds).
_COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Event-loop stall buckets (seconds): how late a short sleep of the probe woke up.
_STALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: The loop probe sleeps this long between two looks at the clock.
LOOP_PROBE_S = 0.02

#: The path of the worker's metrics on its Faust web server.
METRICS_PATH = "/metrics"


class WorkerMetrics(Sensor):
    """The metrics of one Faust app (consumer group ``group``)."""

    def __init__(self, group: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.entries_in = Counter(
            "livecoach_worker_entries_in",
            "Stream entries read and handed to the agents, per topic",
            ["topic"],
            registry=r,
        )
        self.events_out = Counter(
            "livecoach_worker_events_out",
            "Events the agents appended, per topic",
            ["topic"],
            registry=r,
        )
        self.processing = Histogram(
            "livecoach_worker_processing_seconds",
            "Time an agent spent on one event (a batch read of samples), per agent",
            ["agent"],
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        )
        self.agent_errors = Counter(
            "livecoach_worker_agent_errors",
            "Exceptions that ended an agent (Faust restarts it), per agent",
            ["agent"],
            registry=r,
        )
        self.commit_latency = Histogram(
            "livecoach_worker_commit_seconds",
            "Time to commit offsets (the group's fenced commit and the XINFO mirror)",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.rebalances = Counter(
            "livecoach_worker_rebalances", "Rebalances this worker took part in", registry=r
        )
        self.lag = Gauge(
            "livecoach_worker_lag",
            "Entries not yet committed by the group, per assigned partition "
            "(highwater - committed offset; equals XINFO GROUPS lag on Redis 7)",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.loop_stall = Histogram(
            "livecoach_worker_loop_stall_seconds",
            "How late the event loop ran a 20 ms sleep: a stall of every agent of the worker",
            buckets=_STALL_BUCKETS,
            registry=r,
        )
        self.loop_stall_max = Gauge(
            "livecoach_worker_loop_stall_max_seconds",
            "The longest event-loop stall since the previous scrape of /metrics",
            registry=r,
        )
        self._stall_max = 0.0
        self._entries_in = LabelledChildren(self.entries_in)
        self._entries_counted: dict[str, int] = {}
        self._events_out = LabelledChildren(self.events_out)
        self._processing = LabelledChildren(self.processing)

    # --- what the agents report ---------------------------------------------------------

    def event_out(self, topic: str, count: int = 1) -> None:
        if count:
            self._events_out(topic).inc(count)

    def processed(self, agent: str, seconds: float) -> None:
        self._processing(agent).observe(seconds)

    async def on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """Faust's ``on_error`` hook of an agent."""
        self.agent_errors.labels(str(getattr(agent, "name", agent))).inc()

    def stalled(self, seconds: float) -> None:
        self.loop_stall.observe(seconds)
        self._stall_max = max(self._stall_max, seconds)

    async def probe_loop(self) -> None:
        """Measure the event loop's stalls for ever (a task of the app)."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LOOP_PROBE_S)
            self.stalled(max(0.0, time.perf_counter() - before - LOOP_PROBE_S))

    # --- what Faust reports (Sensor hooks) ----------------------------------------------

    def on_commit_initiated(self, consumer: Any) -> float:
        return time.perf_counter()

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        if isinstance(state, float):
            self.commit_latency.observe(time.perf_counter() - state)

    def on_rebalance_start(self, app: Any) -> dict[str, Any]:
        self.rebalances.inc()
        return {"time_start": time.monotonic()}

    # --- scrape -------------------------------------------------------------------------

    def update_entries_in(self, consumer: Any) -> None:
        """Bring ``entries_in`` up to the consumer's count of entries read."""
        for topic, count in list(getattr(consumer, "entries_read", {}).items()):
            counted = self._entries_counted.get(topic, 0)
            if count > counted:
                self._entries_in(topic).inc(count - counted)
                self._entries_counted[topic] = count

    async def update_lag(self, consumer: Any) -> None:
        """Set the lag of every assigned partition the group has committed on."""
        assigned = sorted(consumer.assignment())
        highwaters = await consumer.highwaters(*assigned) if assigned else {}
        committed = consumer._committed_offset  # Faust's: tp -> next offset to read
        self.lag.clear()
        for tp in assigned:
            offset = committed.get(tp)
            if offset is None:
                continue
            lag = max(0, int(highwaters[tp]) - int(offset))
            self.lag.labels(self.group, tp.topic, str(tp.partition)).set(lag)

    def exposition(self) -> bytes:
        self.loop_stall_max.set(self._stall_max)
        self._stall_max = 0.0  # the gauge is the longest since the scrape before
        return bytes(generate_latest(self.registry))


def install(app: faust.App, group: str) -> WorkerMetrics:
    """Add the metrics sensor to ``app`` and serve them on its web server's /metrics.

    Call it before the app's agents are declared (they take its error callback then).
    """
    metrics = WorkerMetrics(group)
    app.sensors.add(metrics)
    # Faust hands every agent declared after this the app's error callback (its own
    # ``on_error`` argument cannot be given besides): count, then do what Faust does.
    faust_on_error = app._on_agent_error

    async def on_agent_error(agent: Any, exc: BaseException) -> None:
        await metrics.on_agent_error(agent, exc)
        await faust_on_error(agent, exc)

    app._on_agent_error = on_agent_error  # type: ignore[method-assign]
    app.task(metrics.probe_loop)

    @app.page(METRICS_PATH)
    async def metrics_page(self: Any, request: Any) -> Any:
        consumer = app.consumer
        if consumer is not None:
            metrics.update_entries_in(consumer)
        if not app.client_only and consumer is not None and consumer.assignment():
            await metrics.update_lag(consumer)
        return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics
