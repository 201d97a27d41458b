"""The workers' /metrics: lag per partition equals ``XINFO GROUPS`` lag on Redis 7.

Real worker processes (``livecoach worker --app live|store``) on a private Redis 7
(Debian's redis-server; the embedded one is 6.2, which has no ENTRIESREAD) and a
private PostgreSQL. The store worker is made to lag by stopping PostgreSQL: its
samples wait in the stream, uncommitted, while its web server keeps answering.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from pipeline.constants import APP_ID, LIVE_TOPIC, SAMPLES_TOPIC
from pipeline.embedded import EmbeddedPostgres, EmbeddedRedis
from pipeline.migrations import migrate
from pipeline.transport.keys import stream_key
from tests.conftest import make_data_dir
from tests.test_agents_e2e import PARTITIONS, Workers, _make_sessions, _produce, _start, _stored
from tests.web.test_grafana_dashboard import dashboard_metric_names, exposed_names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYSTEM_REDIS = "/usr/bin/redis-server"
STORE_GROUP = f"{APP_ID}-store"


@pytest.fixture
def redis7() -> Iterator[EmbeddedRedis]:
    if shutil.which(SYSTEM_REDIS) is None:
        pytest.skip(f"no Redis 7 at {SYSTEM_REDIS}")
    data_dir = make_data_dir()
    server = EmbeddedRedis(data_dir, executable=SYSTEM_REDIS)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    data_dir = make_data_dir()
    server = EmbeddedPostgres(data_dir, durable=False)
    migrate(server.start())
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


def counter(text: str, name: str, topic: str) -> float:
    """The value of counter ``name`` for ``topic`` in a /metrics text."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("topic") == topic:
                return sample.value
    raise AssertionError(f"{name}{{topic={topic!r}}} not in /metrics")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def worker_lag(text: str, group: str) -> dict[int, int]:
    """``livecoach_worker_lag`` of ``samples`` per partition, from an exposition."""
    lag = {}
    for family in text_string_to_metric_families(text):
        if family.name == "livecoach_worker_lag":
            for sample in family.samples:
                labels = sample.labels
                if labels["group"] == group and labels["topic"] == SAMPLES_TOPIC:
                    lag[int(labels["partition"])] = int(sample.value)
    return lag


async def xinfo_lag(client: aioredis.Redis, group: str) -> dict[int, int | None]:
    """``XINFO GROUPS`` lag of ``group`` on each ``samples`` partition it has read."""
    lag: dict[int, int | None] = {}
    for partition in range(PARTITIONS):
        key = stream_key(SAMPLES_TOPIC, partition)
        if not await client.exists(key):
            continue
        for info in await client.xinfo_groups(key):
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name == group:
                lag[partition] = info["lag"]
    return lag


async def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def test_worker_lag_per_partition_matches_xinfo_groups_on_redis_7(
    redis7: EmbeddedRedis, private_postgres: EmbeddedPostgres
) -> None:
    database_url = private_postgres.url
    sessions = _make_sessions(database_url)
    client = aioredis.Redis.from_url(redis7.url)
    workers = Workers(redis7.url, database_url)
    try:
        assert int((await client.info("server"))["redis_version"].split(".")[0]) >= 7
        await _start(client, sessions)
        workers.start("live")
        workers.start("store")
        live_port, store_port = workers.ports["live"], workers.ports["store"]
        await _produce(client, sessions, 0, 20)
        rows = len(sessions) * 20 * 3
        await wait_for(lambda: _stored(database_url) == rows, 90, "rows stored")
        used = {p for p in range(PARTITIONS) if await client.exists(stream_key(SAMPLES_TOPIC, p))}

        async def caught_up() -> bool:
            lags = await xinfo_lag(client, STORE_GROUP)
            return set(lags) == used and all(lag == 0 for lag in lags.values())

        await wait_for(caught_up, 30, "the store group's commits mirrored with lag 0")

        # PostgreSQL away: the store agent retries, its samples wait uncommitted.
        private_postgres.stop()
        await _produce(client, sessions, 20, 60)
        behind = {p: n for p, n in (await xinfo_lag(client, STORE_GROUP)).items()}
        assert any(n for n in behind.values()), behind

        last: tuple[dict[int, int], dict[int, int | None]] | None = None

        async def equal_and_settled() -> bool:
            nonlocal last
            metrics = worker_lag(scrape(store_port), STORE_GROUP)
            xinfo = await xinfo_lag(client, STORE_GROUP)
            settled = last == (metrics, xinfo)
            last = (metrics, xinfo)
            return settled and metrics == xinfo

        await wait_for(equal_and_settled, 30, "worker lag == XINFO GROUPS lag")
        assert last is not None
        metrics, xinfo = last
        print(f"store worker lag per partition {metrics}; XINFO GROUPS lag {xinfo}")
        assert set(metrics) == used
        assert sum(metrics.values()) > 0  # the new samples wait

        # The live worker kept up: its lag is 0 on every partition, as XINFO says.
        async def live_equal() -> bool:
            metrics = worker_lag(scrape(live_port), APP_ID)
            xinfo = await xinfo_lag(client, APP_ID)
            return set(metrics) == used and metrics == xinfo

        await wait_for(live_equal, 30, "the live worker's lag == XINFO GROUPS lag")
        text = scrape(live_port)
        # Counted per read, they still count every entry in and every event out.
        for name, topic in (
            ("livecoach_worker_entries_in_total", SAMPLES_TOPIC),
            ("livecoach_worker_events_out_total", LIVE_TOPIC),
        ):
            entries = sum([await client.xlen(stream_key(topic, p)) for p in range(PARTITIONS)])
            assert counter(text, name, topic) == entries > 0, (name, topic)
        assert 'livecoach_worker_processing_seconds_count{agent="process"}' in text
        assert "livecoach_worker_commit_seconds_count" in text
        # What the Grafana dashboard queries of a worker, both workers expose.
        queried = {n for n in dashboard_metric_names() if n.startswith("livecoach_worker_")}
        for port in (live_port, store_port):
            assert queried - exposed_names(scrape(port)) == set()
    finally:
        workers.stop_all()
        await client.aclose()
