"""web.client against a real edge process: a session from start to stop through the sync
client, and samples posted across a kill -9 and restart of the edge, each stored once."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.constants import SAMPLES_TOPIC
from pipeline.settings import Settings
from pipeline.transport import streams
from tests.web.conftest import ATHLETE
from tests.web.edge_process import edge_process
from web.auth import mint_token
from web.client import Client, ClientError, SyncClient

pytestmark = pytest.mark.integration


def _samples(n: int, first: int = 0) -> list[dict[str, float]]:
    now = time.time() - 3 * 3600
    return [{"t": now + i, "heart_rate": 120.0 + i % 40} for i in range(first, first + n)]


def _stored(redis_url: str, session_id: str) -> int:
    """Samples of ``session_id`` on the samples topic (every record, all partitions)."""
    client = redis.Redis.from_url(redis_url)
    try:
        count = 0
        for p in range(4):
            for _, fields in client.xrange(streams.stream_key(SAMPLES_TOPIC, p)):
                key, value, _, _ = streams.decode_entry(fields)
                if key == session_id.encode() and b'"kind":"samples"' in value:
                    count += value.count(b'"t":')
        return count
    finally:
        client.close()


def test_a_session_through_the_sync_client(
    redis_url: str, database_url: str, users: None, tmp_path: Path, settings: Settings
) -> None:
    token = mint_token(settings, user_id=ATHLETE, role="athlete", ttl_s=600)
    with (
        edge_process(redis_url, database_url, tmp_path) as edge,
        SyncClient(edge.base_url, token) as client,
    ):
        sid = client.start_session(sport="run")
        # 5,000 samples: two requests (3,600 at most each), each with its own key.
        assert client.post_samples(sid, _samples(5000)) == 5000
        assert client.stop_session(sid, reason="done")["status"] == "completed"
        with pytest.raises(ClientError) as refused:
            client.post_samples(sid, [{"t": "soon"}])
        assert refused.value.status == 422 and "samples[0].t" in str(refused.value)
    assert _stored(redis_url, str(sid)) == 5000


async def test_samples_posted_across_an_edge_restart_are_stored_once(
    redis_url: str, database_url: str, users: None, tmp_path: Path, settings: Settings
) -> None:
    token = mint_token(settings, user_id=ATHLETE, role="athlete", ttl_s=600)
    with edge_process(redis_url, database_url, tmp_path) as edge:
        async with Client(edge.base_url, token, retries=8, backoff_s=0.2) as client:
            sid = await client.start_session()
            assert await client.post_samples(sid, _samples(100)) == 100
            edge.kill9()
            restart = threading.Timer(1.5, edge.start)  # back on the same port
            restart.start()
            started = time.monotonic()
            # Refused connections meanwhile: retried with backoff until the edge is back.
            assert await client.post_samples(sid, _samples(100, first=100)) == 100
            waited = time.monotonic() - started
            restart.join()
            await asyncio.sleep(0)
    print(f"\nposted again {waited:.1f} s after the kill (restart after 1.5 s)")
    assert waited >= 1.5
    assert _stored(redis_url, str(sid)) == 200
