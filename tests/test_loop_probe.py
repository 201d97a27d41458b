"""The worker's event-loop stall probe (agents/observability.py) on a real loop: a
blocking call shows as a stall, and the max gauge is the longest since the last scrape."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client.parser import text_string_to_metric_families

from agents.observability import WorkerMetrics


def _scrape(metrics: WorkerMetrics) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "livecoach_worker_loop_stall_max_seconds":
                out["max"] = sample.value
            elif sample.name == "livecoach_worker_loop_stall_seconds_bucket":
                out[f"le {sample.labels['le']}"] = sample.value
    return out


async def test_a_blocked_loop_is_measured_and_the_max_resets_when_scraped() -> None:
    metrics = WorkerMetrics("test")
    probe = asyncio.create_task(metrics.probe_loop())
    try:
        await asyncio.sleep(0.1)
        time.sleep(0.15)  # noqa: ASYNC251 (the stall under test: nothing else runs)
        await asyncio.sleep(0.1)
        first = _scrape(metrics)
        assert 0.12 <= first["max"] < 0.5, first
        assert first["le +Inf"] - first["le 0.1"] == 1, first  # one stall over 100 ms
        await asyncio.sleep(0.1)
        assert _scrape(metrics)["max"] < 0.12  # the longest since the scrape before
    finally:
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
