"""Batching producer: appends records to a topic, a few milliseconds' worth at a time.

Records sent within ``linger_ms`` of the first one share one pipeline to Redis, whatever
their partitions: one round trip for all of them (with ``linger_ms`` 0, those of one
event-loop turn: the requests that arrived together). Fewer, larger appends also wake
the agents' consumers less often, which on shared cores is worth more than the linger
costs. Every caller awaits the offset of its own record, so the edge answers 202 only
once its samples are in the stream: an acknowledged sample is never lost while Redis
keeps its data. With ``durable_ack_ms`` (``LIVECOACH_DURABLE_ACK_MS``) the batch's
pipeline ends with ``WAIT 1 <ms>``: callers get their offsets only once a replica holds
the records too, so a failover to that replica loses none; otherwise
:class:`~pipeline.errors.NotDurable` (a 503).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pipeline.errors import NotDurable, ServiceError
from pipeline.transport.errors import NotReplicated
from pipeline.transport.idempotence import ProducerIdentity
from pipeline.transport.streams import Entry, append_many, partition_for_key

log = logging.getLogger(__name__)

_Pending = tuple[int, Entry, "asyncio.Future[int]"]


class ProduceError(ServiceError):
    """Redis did not take the records; the caller must not acknowledge them."""

    backend = "redis"


class BatchingProducer:
    def __init__(
        self,
        redis: aioredis.Redis,
        topic: str,
        partitions: int,
        *,
        linger_ms: float = 2.0,
        max_batch: int = 1000,
        durable_ack_ms: int = 0,
    ) -> None:
        self._redis = redis
        self._durable_ack_ms = durable_ack_ms
        self._linger_s = linger_ms / 1000.0
        self.topic = topic
        self.partitions = partitions
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._flush_handle: asyncio.Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Appends are idempotent per producer: a resent batch is not appended twice.
        self._identity = ProducerIdentity()

    def partition_of(self, key: bytes) -> int:
        return partition_for_key(key, self.partitions)

    async def send(
        self,
        key: bytes,
        value: bytes,
        timestamp_ms: int,
        headers: dict[str, bytes] | None = None,
    ) -> tuple[int, int]:
        """Append one record; (partition, offset) once it is in the stream."""
        if self._closed:
            raise ProduceError(f"producer of {self.topic!r} is closed")
        partition = self.partition_of(key)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._pending.append((partition, (key, value, headers, timestamp_ms), future))
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif self._flush_handle is None:
            # A callback scheduled now runs on the loop's next turn at the earliest,
            # after every handler that is ready in this one has queued its record.
            if self._linger_s > 0:
                self._flush_handle = loop.call_later(self._linger_s, self._flush)
            else:
                self._flush_handle = loop.call_soon(self._flush)
        return partition, await future

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # a full batch goes before its timer
            self._flush_handle = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._write(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, batch: list[_Pending]) -> None:
        by_partition: dict[int, list[Entry]] = defaultdict(list)
        for partition, entry, _ in batch:
            by_partition[partition].append(entry)
        try:
            offsets = await append_many(
                self._redis,
                self.topic,
                by_partition,
                identity=self._identity,
                replicas=1 if self._durable_ack_ms else 0,
                replica_timeout_ms=self._durable_ack_ms,
            )
        except NotReplicated as exc:
            log.warning("not acknowledged: %s", exc)
            self._fail(batch, NotDurable(f"not acknowledged: {exc}; retry"))
            return
        except (RedisError, OSError) as exc:
            error = ProduceError(f"Redis refused the append to {self.topic}: {exc}")
            log.warning("%s", error)
            self._fail(batch, error)
            return
        except BaseException as exc:
            self._fail(batch, ProduceError(f"append interrupted: {exc!r}"))
            raise
        taken = {partition: iter(values) for partition, values in offsets.items()}
        for partition, _, future in batch:
            if not future.done():
                future.set_result(next(taken[partition]))

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def aclose(self) -> None:
        """Flush what is pending, then refuse new records."""
        self._closed = True
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
