"""livecoach's topic retentions: defaults, settings, and what the processes store."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pipeline.retention import apply_topic_retentions, topic_retentions
from pipeline.settings import load_settings
from pipeline.transport import streams


def test_defaults_keep_a_day_and_the_resume_window() -> None:
    retentions = topic_retentions(load_settings())
    day_ms, two_hours_ms = 24 * 3600 * 1000, 2 * 3600 * 1000
    assert retentions == {
        "samples": streams.Retention(max_age_ms=day_ms),
        "store": streams.Retention(max_age_ms=day_ms),
        "live": streams.Retention(max_age_ms=two_hours_ms),
    }


@pytest.mark.integration
async def test_settings_are_stored(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVECOACH_LIVE_RETENTION_S", "90")
    settings = load_settings()
    r = aioredis.Redis.from_url(redis_url)
    try:
        await apply_topic_retentions(r, settings, prefix="t-")
        assert await streams.get_retention(r, "t-live") == streams.Retention(max_age_ms=90_000)
        assert await streams.get_retention(r, "t-samples") == streams.Retention(
            max_age_ms=86_400_000
        )
    finally:
        await r.aclose()
