"""Batching producer: appends records to a topic, a few milliseconds' worth at a time.

Requests for the same partition that arrive within ``linger_ms`` share one append (one
round trip to Redis), which is what keeps a thousand devices posting at 1 Hz cheap.
Every caller awaits the offset of its own record, so the edge answers 202 only once
its samples are in the stream: an acknowledged sample is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pipeline.errors import ServiceError
from pipeline.streams import Entry, append, partition_for_key

log = logging.getLogger(__name__)


class ProduceError(ServiceError):
    """Redis did not take the records; the caller must not acknowledge them."""


@dataclass
class _Pending:
    entries: list[Entry] = field(default_factory=list)
    futures: list[asyncio.Future[int]] = field(default_factory=list)


class BatchingProducer:
    def __init__(
        self,
        redis: aioredis.Redis,
        topic: str,
        partitions: int,
        *,
        linger_ms: float = 2.0,
        max_batch: int = 500,
    ) -> None:
        self._redis = redis
        self.topic = topic
        self.partitions = partitions
        self._linger_s = linger_ms / 1000.0
        self._max_batch = max_batch
        self._pending: dict[int, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def partition_of(self, key: bytes) -> int:
        return partition_for_key(key, self.partitions)

    async def send(self, key: bytes, value: bytes, timestamp_ms: int) -> tuple[int, int]:
        """Append one record; (partition, offset) once it is in the stream."""
        if self._closed:
            raise ProduceError(f"producer of {self.topic!r} is closed")
        partition = self.partition_of(key)
        pending = self._pending.get(partition)
        if pending is None:
            pending = self._pending[partition] = _Pending()
            self._spawn(self._flush_later(partition, pending))
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending.entries.append((key, value, None, timestamp_ms))
        pending.futures.append(future)
        if len(pending.entries) >= self._max_batch:
            self._take(partition, pending)
            self._spawn(self._flush(partition, pending))
        return partition, await future

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self, partition: int, pending: _Pending) -> bool:
        if self._pending.get(partition) is pending:
            del self._pending[partition]
            return True
        return False

    async def _flush_later(self, partition: int, pending: _Pending) -> None:
        await asyncio.sleep(self._linger_s)
        if self._take(partition, pending):
            await self._flush(partition, pending)

    async def _flush(self, partition: int, pending: _Pending) -> None:
        try:
            offsets = await append(self._redis, self.topic, partition, pending.entries)
        except (RedisError, OSError) as exc:
            error = ProduceError(f"Redis refused the append to {self.topic}/{partition}: {exc}")
            log.warning("%s", error)
            for future in pending.futures:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException as exc:
            for future in pending.futures:
                if not future.done():
                    future.set_exception(ProduceError(f"append interrupted: {exc!r}"))
            raise
        for future, offset in zip(pending.futures, offsets, strict=True):
            if not future.done():
                future.set_result(offset)

    async def aclose(self) -> None:
        """Flush what is pending, then refuse new records."""
        self._closed = True
        for partition, pending in list(self._pending.items()):
            if self._take(partition, pending):
                self._spawn(self._flush(partition, pending))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
