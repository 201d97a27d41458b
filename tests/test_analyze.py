"""``livecoach analyze`` runs each real recording through the live agents on a real Redis
and matches the reference figures of ``LICENSES.txt``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.test_recordings import RECORDINGS, REFERENCE, SAMPLES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"{RECORDINGS} not present"),
]


def _analyze(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
    env["LIVECOACH_REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "analyze", *args],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_analyze_matches_the_reference_figures(redis_url: str, name: str) -> None:
    result = _analyze(redis_url, "--json", str(RECORDINGS / name))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    mean_hr, max_hr, mean_power, np_w, decoupling = REFERENCE[name]
    assert summary["samples"] == SAMPLES[name]
    assert round(summary["mean_hr"], 1) == mean_hr
    assert round(summary["max_hr"], 1) == max_hr
    if mean_power is None:
        assert summary["mean_power"] is None and summary["np"] is None
    else:
        assert round(summary["mean_power"], 1) == mean_power
        assert abs(summary["np"] - np_w) <= 1.0
    assert abs(summary["decoupling_pct"] - decoupling) <= 0.5
    for key in ("duration_s", "if", "tss", "distance_m", "time_in_zone", "alerts"):
        assert key in summary, key
    assert set(summary["time_in_zone"]) == {"heart_rate", "power", "pace"}


def test_analyze_leaves_nothing_behind_in_redis(redis_url: str) -> None:
    import redis

    name = "indoor_2x10_intervals_power_hr__sample-activity-indoor-trainer.fit"
    assert _analyze(redis_url, "--json", str(RECORDINGS / name)).returncode == 0
    client = redis.Redis.from_url(redis_url)
    leftovers = [k for k in client.scan_iter(match="*replay-*")]
    client.close()
    assert leftovers == []


def test_analyze_refuses_an_unreadable_file(redis_url: str, tmp_path: object) -> None:
    result = _analyze(redis_url, "/nonexistent/ride.fit")
    assert result.returncode == 1
    assert "no such file" in result.stderr and "Traceback" not in result.stderr
