"""The Faust transport for ``redis://`` (and ``rediss://``) broker URLs.

Registered under the ``faust.transports`` entry-point group in ``pyproject.toml``, so
``faust.App(..., broker="redis://127.0.0.1:6379/0")`` loads this class (without the
registration Faust would hand back the redis-py *module*). The design is in
``docs/transport.md``: one stream per topic partition (:mod:`.streams`), consumer
(:mod:`.consumer`), producer (:mod:`.producer`), group coordination
(:mod:`.coordination`) and changelog compaction (:mod:`.compaction`).
"""

from __future__ import annotations

import itertools
import logging
import warnings
from typing import Any

import redis.asyncio as aioredis
from faust.exceptions import AlreadyConfiguredWarning
from faust.transport import base

from pipeline.transport import streams
from pipeline.transport.consumer import Consumer
from pipeline.transport.keys import COMPACTED_KEY
from pipeline.transport.producer import Producer
from pipeline.transport.tunables import Tunables

log = logging.getLogger(__name__)

#: How long Faust's conductor waits to batch subscription changes before resubscribing.
RESUBSCRIBE_DELAY_S = 5.0


def read_in_batches(app: Any, topic: str, *, linger_s: float = 0.0) -> None:
    """Deliver ``topic`` to ``app``'s agents as one event per read of a partition.

    Faust costs a fraction of a millisecond per event, on top of the agent's own work,
    which caps a worker at a few thousand events a second. A topic read in batches
    arrives as events whose value is a JSON array of the values of the consecutive
    entries one read returned (oldest first; the read takes what is there, up to
    ``broker_max_poll_records``, and never waits for more), carrying the offset of the
    last of them. Faust treats the skipped offsets as a gap that the batch's ack
    closes, so committing works as for single entries. An idle worker still sees one
    entry per event; a busy one sees larger batches, and so spends less per record.

    ``linger_s`` spaces the reads of the app's consumer (of every topic it reads) at
    least that far apart, so that batches grow even at a low rate: for apps to which a
    few milliseconds do not matter (storage), not for the live path.

    For JSON-valued topics whose entries each make sense alone (the record keys are not
    kept: the values must carry what identifies them). The message's ``offsets`` header
    gives each entry's offset (:func:`pipeline.transport.consumer.batch_offsets`), so an
    agent can tell a record it already applied (a replay after a crash) from a new one.
    Call before the app starts.
    """
    transport = app.transport
    if not isinstance(transport, Transport):
        raise TypeError(f"batched reads need the Redis transport, not {type(transport)!r}")
    transport.batched_topics[topic] = linger_s


def _joined_url(url: Any) -> str:
    """The broker URL as configured, from the list Faust made of it.

    Faust splits a broker URL at every comma (Kafka's ``kafka://a:9092,b:9092``), so
    ``redis+sentinel://:pw@h1:26379,h2:26379/mymaster`` arrives as two URLs: the first
    with the userinfo, the last with the path and query. Joined back, they are the
    URL :func:`~pipeline.transport.urls.parse_redis_url` reads. (A plain ``redis://``
    URL arrives whole.)
    """
    if not isinstance(url, list | tuple):
        return str(url)
    first, *rest = (str(u) for u in url)
    if not rest:
        return first
    return ",".join([first, *(u.partition("://")[2] or u for u in rest)])


class Transport(base.Transport):
    """Redis Streams transport for Faust."""

    Consumer = Consumer
    Producer = Producer
    driver_version = f"livecoach-redis-streams (redis-py {aioredis.__name__})"
    default_port = 6379

    def __init__(self, url: Any, app: Any, loop: Any = None) -> None:
        super().__init__(url, app, loop=loop)
        #: Read once, here (see :mod:`.tunables`); the URL keeps only Redis's options.
        self.tunables, self.redis_url = Tunables.load(_joined_url(url))
        conf = app.conf
        if str(conf.web_bind) == "0.0.0.0":
            # Faust listens on every interface out of the box; ours stays on loopback
            # unless web_bind (or ``faust worker --web-bind``) says otherwise.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AlreadyConfiguredWarning)
                conf.web_bind = "127.0.0.1"
        #: Partition count per topic, as stored in Redis (filled as topics are seen).
        self.partition_counts: dict[str, int] = {}
        #: Topics read in batches, see :func:`read_in_batches`, with their linger.
        self.batched_topics: dict[str, float] = {}

    def create_conductor(self, **kwargs: Any) -> Any:
        conductor = super().create_conductor(**kwargs)
        # Faust waits 45 s before acting on a new subscription (for example the reply
        # topic of the first ``ask``) because a Kafka rebalance is expensive; ours
        # costs a few round trips. (Not shorter than 3 s: Faust's reply consumer starts
        # reading its reply topic 3 s after adding it.)
        conductor._resubscribe_sleep_lock_seconds = RESUBSCRIBE_DELAY_S  # type: ignore[attr-defined]
        return conductor

    async def stored_partitions(self, redis: aioredis.Redis, topic: str) -> int:
        """``topic``'s partition count as stored in Redis (cached for this process).

        A topic nobody declared gets this app's ``topic_partitions`` recorded, unless
        another app recorded its own first: every app then uses the same count (with
        each its own, records went to partitions the other never read).
        """
        count = self.partition_counts.get(topic)
        if count is None:
            count = await streams.ensure_partition_count(
                redis, topic, int(self.app.conf.topic_partitions)
            )
            self.partition_counts[topic] = count
        return count

    def partition_for(
        self, topic: str, key: bytes | None, round_robin: itertools.count[int] | None = None
    ) -> int:
        """The partition a record without an explicit one goes to (Kafka's choice).

        Uses the stored count (:meth:`stored_partitions`, which the producer and the
        consumer call before they partition a topic).
        """
        count = self.partition_counts.get(topic) or int(self.app.conf.topic_partitions)
        if key is None:
            return next(round_robin) % count if round_robin is not None else 0
        return streams.partition_for_key(key, count)

    async def declare_topic(
        self,
        redis: aioredis.Redis,
        topic: str,
        partitions: int,
        *,
        retention: Any = None,
        compacting: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Declare a topic (idempotent); a different partition count is an error."""
        count = await streams.declare_topic(redis, topic, int(partitions))
        self.partition_counts[topic] = count
        if compacting:
            await redis.sadd(COMPACTED_KEY, topic)
        if retention and not compacting:
            seconds = (
                retention.total_seconds() if hasattr(retention, "total_seconds") else retention
            )
            if await streams.get_retention(redis, topic) is None:
                await streams.set_retention(
                    redis, topic, streams.Retention(max_age_ms=int(float(seconds) * 1000))
                )
