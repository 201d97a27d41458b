"""The Faust producer of the Redis Streams transport.

``send()`` queues a record and returns a future; one sender task writes whatever has
queued up in a single pipeline (one ``XADD 0-*`` per record on Redis 7, one script
call per partition on 6.2), with one batch in flight, so batches grow with the load
instead of waiting on a timer. Futures resolve to Faust's ``RecordMetadata`` with the
record's offset.

``flush()`` flushes what Faust had buffered *when the flush began* and then waits for
the records already handed to us; waiting for an empty buffer (Faust's own
``ProducerBuffer.flush``) never returns under steady table writes, starves the
commit timer, and turns a crash into thousands of duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from faust.transport.producer import Producer as FaustProducer
from faust.types import TP
from faust.types.tuples import RecordMetadata
from redis.exceptions import NoScriptError, ResponseError

from pipeline.transport import streams
from pipeline.transport.clients import connect
from pipeline.transport.errors import TRANSIENT_ERRORS
from pipeline.transport.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pipeline.transport.driver import Transport

log = logging.getLogger(__name__)

#: Event-loop turns the sender yields before writing a batch.
LINGER_TURNS = int(os.environ.get("LIVECOACH_PRODUCER_LINGER_TURNS", "32"))
#: Most records written in one pipeline.
MAX_BATCH = 2000

_Pending = tuple[str, int, streams.Entry, "asyncio.Future[RecordMetadata]"]


def _headers(headers: Any) -> dict[str, bytes] | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {
        str(k): (v if isinstance(v, bytes) else str(v).encode()) if v is not None else b""
        for k, v in items
    }


class Producer(FaustProducer):
    """Faust producer over Redis Streams."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis: aioredis.Redis | None = None
        self._pending: list[_Pending] = []
        self._in_flight: list[asyncio.Future[RecordMetadata]] = []
        self._wakeup = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._round_robin: dict[str, itertools.count[int]] = defaultdict(itertools.count)
        self._closing = False
        self._running_loop: asyncio.AbstractEventLoop | None = None
        #: Records written and pipelines used (for the benchmark's report).
        self.records_sent = 0
        self.batches_sent = 0

    @property
    def _rt(self) -> Transport:
        """Our transport, typed (Faust types it as the generic TransportT)."""
        return cast("Transport", self.transport)

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "producer not started"
        return self._redis

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        loop = self._running_loop
        if loop is None:
            loop = self._running_loop = asyncio.get_running_loop()
        return loop

    async def on_start(self) -> None:
        self._redis = await connect(self._rt.redis_url)
        self._sender = asyncio.create_task(self._send_loop(), name="redis-producer")
        await super().on_start()

    async def on_stop(self) -> None:
        await self.flush()
        if self.batches_sent:
            log.info(
                "producer: %d records in %d pipelines (%.1f a pipeline)",
                self.records_sent, self.batches_sent, self.records_sent / self.batches_sent,
            )  # fmt: skip
        self._closing = True
        self._wakeup.set()
        await cancel_and_wait(self._sender)
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    # --- Faust API --------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        if partition is None:
            if topic not in self._rt.partition_counts:
                await self._rt.stored_partitions(self.redis, topic)
            partition = self._rt.partition_for(topic, key, self._round_robin[topic])
        timestamp_ms = int((timestamp if timestamp is not None else time.time()) * 1000)
        fut: asyncio.Future[RecordMetadata] = self._loop_now().create_future()
        # A None value stays None: a tombstone (Faust's table delete).
        entry: streams.Entry = (key, value, _headers(headers), timestamp_ms)
        self._pending.append((topic, int(partition), entry, fut))
        self._wakeup.set()
        return fut

    async def send_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> RecordMetadata:
        fut = await self.send(topic, key, value, partition, timestamp, headers)
        return await fut

    async def flush(self) -> None:
        # Only what Faust had buffered when we began, then what we already hold.
        buffered = self.buffer.size
        if buffered:
            await self.buffer.flush_atmost(buffered)
        waiting = [fut for *_, fut in self._pending] + list(self._in_flight)
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)

    async def create_topic(
        self, topic: str, partitions: int, replication: int, **kwargs: Any
    ) -> None:
        await self._rt.declare_topic(self.redis, topic, partitions, **kwargs)

    def key_partition(self, topic: str, key: bytes) -> TP:
        return TP(topic, self._rt.partition_for(topic, key))

    def supports_headers(self) -> bool:
        return True

    # --- sending ----------------------------------------------------------------------

    async def _maxlen(self, topic: str) -> int | None:
        retention = await streams.cached_retention(self.redis, topic)
        return retention.maxlen if retention else None

    async def _send_loop(self) -> None:
        while not self._closing:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Let the agents run a little before writing, so that a pipeline carries
            # tens of records instead of a few (each pipeline costs a syscall and a
            # round trip; a few event-loop turns cost microseconds).
            for _ in range(LINGER_TURNS):
                if len(self._pending) >= MAX_BATCH:
                    break
                await asyncio.sleep(0)
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            self._in_flight = [fut for *_, fut in batch]
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not transient: fail these records, go on
                log.exception("could not write %d records", len(batch))
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
            finally:
                self._in_flight = []

    async def _write(self, batch: list[_Pending]) -> None:
        groups: dict[tuple[str, int], list[_Pending]] = defaultdict(list)
        for item in batch:
            groups[(item[0], item[1])].append(item)
        todo = list(groups.items())
        failures = 0
        reload = False
        while todo:
            try:
                server = await streams.prepare(self.redis, reload_script=reload)
                reload = False
                maxlens = [await self._maxlen(topic) for (topic, _), _ in todo]
                counts = []
                async with self.redis.pipeline(transaction=False) as pipe:
                    for ((topic, partition), items), maxlen in zip(todo, maxlens, strict=True):
                        counts.append(
                            streams.queue_append(
                                pipe, server, topic, partition, [it[2] for it in items],
                                maxlen=maxlen,
                            )
                        )  # fmt: skip
                    results = await pipe.execute(raise_on_error=False)
            except TRANSIENT_ERRORS as exc:
                # At least once: resend the whole batch once Redis is back.
                failures += 1
                delay = min(5.0, 0.05 * 2**failures)
                log.warning("producer: %r; retrying %d records in %.1f s", exc, len(batch), delay)
                await asyncio.sleep(delay)
                continue
            retry = []
            index = 0
            for (tp_key, items), count in zip(todo, counts, strict=True):
                group_results = results[index : index + count]
                index += count
                errors = [r for r in group_results if isinstance(r, Exception)]
                if errors:
                    if any(isinstance(e, NoScriptError) for e in errors) or any(
                        "NOSCRIPT" in str(e) for e in errors
                    ):
                        reload = True
                        retry.append((tp_key, items))
                        continue
                    error = errors[0]
                    if not isinstance(error, ResponseError):
                        raise error
                    for *_, fut in items:
                        if not fut.done():
                            fut.set_exception(error)
                    continue
                offsets = streams.offsets_from_results(group_results)
                topic, partition = tp_key
                tp = TP(topic, partition)
                for (_, _, entry, fut), offset in zip(items, offsets, strict=True):
                    if not fut.done():
                        fut.set_result(
                            RecordMetadata(topic, partition, tp, offset, entry[3] / 1000.0, None)
                        )
                self.records_sent += len(items)
            self.batches_sent += 1
            todo = retry
