"""``livecoach bench e2e`` at a small scale: every figure it reports is measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.e2e import bench_e2e
from pipeline.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_small_run_measures_every_figure(tmp_path: Path) -> None:
    settings = load_settings(
        jwt_secret="bench-secret-of-at-least-32-bytes-long!", data_dir=tmp_path
    )
    result = bench_e2e(
        settings, athletes=6, coaches=2, per_coach=3, duration_s=4, warmup_s=1.0,
        idle=20, storm=12, storm_events=5, runs=1,
    )  # fmt: skip
    run = result["runs"][0]
    load = run["load"]
    assert load["connection_success_pct"] == 100.0
    assert load["posts"] == {"202": 6 * 4}
    # Each sample reaches the athlete's socket and the coach's (2 coaches x 3 athletes).
    counted = load["latency_ms"]["n"] + load["warmup_latency_ms"]["n"]
    assert counted == 2 * 6 * 4, load
    assert load["latency_ms"]["n"] > 0 and load["warmup_latency_ms"]["n"] > 0
    assert 0 < load["latency_ms"]["p99"] < 5000
    assert load["worker_share_ms"]["n"] > 0
    assert load["edge_only_latency_ms"]["n"] == 2 * 6 * 4
    assert run["raw_aiohttp_broadcast"]["latency_ms"]["n"] == 2 * 6 * 4
    assert run["idle"]["connections"] == 20
    assert run["storm"]["outcomes"] == {"exact": 12, "wrong": 0, "failed": 0}
    assert result["median"]["edge_p99_ms"] == load["latency_ms"]["p99"]
