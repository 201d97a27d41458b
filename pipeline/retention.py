"""How long livecoach keeps each of its topics in Redis.

``samples`` and ``store`` are kept for a window (24 h by default) and never trimmed
past the lowest offset committed by the groups reading them (the transport's age
retention, :func:`pipeline.transport.streams.apply_age_retention`, run by each Faust
group's leader). ``live`` is kept for the resume window (2 h): a dashboard that
reconnects with an older cursor gets a snapshot from PostgreSQL instead of a replay
(``web/resume.py``). The changelogs of the tables are compacted instead.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from pipeline.constants import LIVE_TOPIC, SAMPLES_TOPIC, STORE_TOPIC
from pipeline.settings import Settings
from pipeline.transport import streams


def topic_retentions(settings: Settings, prefix: str = "") -> dict[str, streams.Retention]:
    """Topic -> retention, from the settings (``LIVECOACH_*_RETENTION_S``)."""
    windows_s = {
        SAMPLES_TOPIC: settings.samples_retention_s,
        STORE_TOPIC: settings.store_retention_s,
        LIVE_TOPIC: settings.live_retention_s,
    }
    return {
        prefix + topic: streams.Retention(max_age_ms=int(seconds * 1000))
        for topic, seconds in windows_s.items()
    }


async def apply_topic_retentions(
    redis: aioredis.Redis, settings: Settings, prefix: str = ""
) -> None:
    """Store the retentions of livecoach's topics (each process that declares them does:
    the settings are the truth, the last one started wins)."""
    for topic, retention in topic_retentions(settings, prefix).items():
        if await streams.get_retention(redis, topic) != retention:
            await streams.set_retention(redis, topic, retention)
