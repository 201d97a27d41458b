"""The Faust producer of the Redis Streams transport.

``send()`` queues a record and returns a future; one sender task writes whatever has
queued up in one call of the append script (:mod:`.append_script`: a batch for each
partition; one call per partition on a Redis Cluster), with one write in flight, so
batches grow with the load instead of waiting on a timer. Futures resolve to Faust's
``RecordMetadata`` with the record's offset.

``flush()`` flushes what Faust had buffered *when the flush began* and then waits for
the records already handed to us; waiting for an empty buffer (Faust's own
``ProducerBuffer.flush``) never returns under steady table writes, starves the
commit timer, and turns a crash into thousands of duplicates. Faust flushes before every
commit, so once a write has failed ``flush()`` raises ``ProducerSendError``: the commit
does not happen, Faust stops the worker, and its successor replays from the last commit.

Appends are idempotent (:mod:`pipeline.transport.idempotence`): a batch resent after a
lost reply is not written twice. Writes are fenced by the group generation they were
made in: while our lease may have lapsed they wait, and once the lease did lapse, or
the generation ended, they are refused (``WriteFenced``); changelog appends also carry
the generation to the append script, which refuses them once another generation owns
the partition (see :mod:`pipeline.transport.guards`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from faust.exceptions import ProducerSendError
from faust.transport.producer import Producer as FaustProducer
from faust.types import TP
from faust.types.tuples import RecordMetadata
from redis.exceptions import ResponseError

from pipeline.transport import streams
from pipeline.transport.clients import connect, is_cluster
from pipeline.transport.errors import TRANSIENT_ERRORS, WriteFenced
from pipeline.transport.idempotence import ProducerIdentity
from pipeline.transport.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pipeline.transport.coordination import GroupCoordinator
    from pipeline.transport.driver import Transport

log = logging.getLogger(__name__)

#: Most records written in one pipeline.
MAX_BATCH = 2000
#: How often held writes (our lease may have lapsed) ask again whether they may go.
HOLD_POLL_S = 0.05

#: A permit not asked for yet (see Producer._admit).
_UNKNOWN: Any = object()

#: (topic, partition, entry, future, fence token of the generation it was sent in: "" =
#: unfenced, see GroupCoordinator.fence_token)
_Pending = tuple[str, int, streams.Entry, "asyncio.Future[RecordMetadata]", str]


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
        # One pipeline in flight, with a batch per partition (and per generation for
        # changelogs, rarely two): a retry only ever repeats the last few.
        self.identity = ProducerIdentity(
            window=4, state_ttl_s=self._rt.tunables.producer_state_ttl_s
        )
        #: Writes Redis refused (not fenced ones): (how many, the first error).
        self._lost: tuple[int, BaseException] | None = None
        #: Records written and pipelines used (for the benchmark's report).
        self.records_sent = 0
        self.batches_sent = 0
        #: Batches Redis had appended already when we resent them (lost replies).
        self.repeats_avoided = 0
        #: Records refused by a fence (lease lapsed, generation over).
        self.records_fenced = 0

    @property
    def _rt(self) -> Transport:
        """Our transport, typed (Faust types it as the generic TransportT)."""
        return cast("Transport", self.transport)

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "producer not started"
        return self._redis

    def _coordinator(self) -> GroupCoordinator | None:
        """The group membership whose generation fences our writes (None: a client)."""
        consumer = getattr(self.app, "_consumer", None)  # never create one from here
        return getattr(consumer, "coordinator", None)

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
        coordinator = self._coordinator()
        fence = coordinator.fence_token if coordinator is not None else ""
        self._pending.append((topic, int(partition), entry, fut, fence))
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
        waiting = [item[3] for item in self._pending] + list(self._in_flight)
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        if self._lost is not None:
            # Faust commits right after this: the events whose writes were lost must be
            # processed again, so no commit may go past them (Faust crashes the worker).
            count, error = self._lost
            raise ProducerSendError(
                f"{count} records could not be written to Redis (first error: {error!r}); "
                "not committing past them"
            )

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
            for _ in range(self._rt.tunables.producer_linger_turns):
                if len(self._pending) >= MAX_BATCH:
                    break
                await asyncio.sleep(0)
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            admitted = self._admit(batch)
            if admitted is None:
                await asyncio.sleep(HOLD_POLL_S)
                continue
            batch = admitted
            self._in_flight = [item[3] for item in batch]
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # not transient: fail these records, go on
                log.exception("could not write %d records", len(batch))
                self._fail_lost(batch, exc)
            finally:
                self._in_flight = []

    def _admit(self, batch: list[_Pending]) -> list[_Pending] | None:
        """The records of ``batch`` that may be written now; None: hold them all.

        A record made in a generation during which our lease lapsed is refused (another
        worker may own its partition now), and so is a changelog record of a generation
        that ended (stale table state). While our lease may have lapsed (e.g. right
        after SIGCONT, before a heartbeat) nobody can tell yet: the batch waits.
        """
        coordinator = self._coordinator()
        if coordinator is None:
            return batch
        changelogs = self.app.tables.changelog_topics
        admitted: list[_Pending] = []
        refused: dict[tuple[str, int], int] = defaultdict(int)
        permits: dict[tuple[str, bool], bool | None] = {("", False): True, ("", True): True}
        for item in batch:
            asked = (item[4], item[0] in changelogs)
            permit = permits.get(asked, _UNKNOWN)
            if permit is _UNKNOWN:
                permit = permits[asked] = coordinator.write_permit(asked[0], changelog=asked[1])
            if permit is None:
                self._pending[:0] = batch
                return None
            if permit:
                admitted.append(item)
                continue
            refused[(item[0], item[1])] += 1
            fut = item[3]
            if not fut.done():
                fut.set_exception(WriteFenced(f"generation {asked[0]} may no longer write"))
        if refused:
            self.records_fenced += sum(refused.values())
            log.warning(
                "producer: refused %d records of a generation that ended or whose lease "
                "lapsed (their events are processed again by the owner): %s",
                sum(refused.values()),
                ", ".join(f"{t}[{p}]: {n}" for (t, p), n in sorted(refused.items())),
            )
        return admitted

    def _fail_lost(self, items: list[_Pending], error: BaseException) -> None:
        """Fail records Redis did not take; flush() raises from now on."""
        count = sum(1 for item in items if not item[3].done())
        for item in items:
            if not item[3].done():
                item[3].set_exception(error)
        if count:
            lost, first = self._lost if self._lost is not None else (0, error)
            self._lost = (lost + count, first)

    async def _write(self, batch: list[_Pending]) -> None:
        changelogs = self.app.tables.changelog_topics
        # A batch per partition (and generation, for a changelog's fence; and apart,
        # records written outside any generation); its sequence number stays with it
        # through every retry, so Redis appends it once.
        groups: dict[tuple[str, int, str, bool], list[_Pending]] = defaultdict(list)
        for item in batch:
            fence = item[4] if item[0] in changelogs else ""
            groups[(item[0], item[1], fence, bool(item[4]))].append(item)
        maxlens = {topic: await self._maxlen(topic) for topic, _, _, _ in groups}
        todo = [
            (
                streams.Batch(
                    topic, partition, [item[2] for item in items], maxlens[topic],
                    self.identity.next_sequence(topic, partition), fence, leased,
                ),
                items,
            )
            for (topic, partition, fence, leased), items in groups.items()
        ]  # fmt: skip
        failures = 0
        reload = False
        # One call for every batch, on one server; one call each on a cluster, or
        # after a shared call failed as a whole (some batches may be in: their
        # sequences tell).
        one_each = is_cluster(self.redis)
        while todo:
            batches = [b for b, _ in todo]
            try:
                server = await streams.prepare(self.redis, reload_script=reload)
                reload = False
                # Read at every attempt: a retry after a long outage may find it over.
                # 1 (long past) when we hold no lease: refused, never unchecked.
                coordinator = self._coordinator()
                lease_end = max(1, coordinator.lease_end_ms) if coordinator is not None else 0
                calls = streams.append_calls(
                    server, batches, identity=self.identity, lease_end_ms=lease_end,
                    one_each=one_each,
                )  # fmt: skip
                async with self.redis.pipeline(transaction=False) as pipe:
                    for _, command in calls:
                        pipe.execute_command(*command)
                    results = await pipe.execute(raise_on_error=False)
            except TRANSIENT_ERRORS as exc:
                # Resend the same batches once Redis is back: those that did reach it
                # are recognised by their sequence numbers and not appended again.
                failures += 1
                delay = min(5.0, 0.05 * 2**failures)
                log.warning("producer: %r; retrying %d records in %.1f s", exc, len(batch), delay)
                await asyncio.sleep(delay)
                continue
            retry: list[tuple[streams.Batch, list[_Pending]]] = []
            transient: BaseException | None = None
            for (indexes, _), result in zip(calls, results, strict=True):
                if isinstance(result, Exception):
                    if streams.script_missing(result):
                        reload = True
                    elif isinstance(result, TRANSIENT_ERRORS):
                        # A Redis Cluster answers per node: one node failing over fails
                        # only its partitions' appends, which go again like a whole
                        # pipeline that failed (recognised by their sequence numbers).
                        transient = result
                    elif isinstance(result, ResponseError) and len(indexes) > 1:
                        log.warning(
                            "producer: an append of %d batches failed (%s); sending "
                            "them one call each", len(indexes), result,
                        )  # fmt: skip
                        one_each = True
                    elif isinstance(result, ResponseError):
                        self._refused(*todo[indexes[0]], result)
                        continue
                    else:
                        raise result
                    retry += (todo[i] for i in indexes)
                    continue
                mine = [todo[i] for i in indexes]
                for (sent, items), outcome in zip(
                    mine, streams.outcomes(result, [b for b, _ in mine]), strict=True
                ):
                    if isinstance(outcome, ResponseError):
                        self._refused(sent, items, outcome)
                    else:
                        self._appended(sent, items, *outcome)
            self.batches_sent += 1
            todo = retry
            if transient is not None:
                failures += 1
                delay = min(5.0, 0.05 * 2**failures)
                count = sum(len(items) for _, items in retry)
                log.warning("producer: %r; retrying %d records in %.1f s", transient, count, delay)
                await asyncio.sleep(delay)

    def _appended(
        self, sent: streams.Batch, items: list[_Pending], offsets: list[int], repeated: bool
    ) -> None:
        topic, partition = sent.topic, sent.partition
        if repeated:
            self.repeats_avoided += 1
            log.warning(
                "producer: %d records for %s[%d] were appended before their reply "
                "was lost; not appended again (offsets %d-%d)",
                len(items), topic, partition, offsets[0], offsets[-1],
            )  # fmt: skip
        tp = TP(topic, partition)
        for (_, _, entry, fut, _), offset in zip(items, offsets, strict=True):
            if not fut.done():
                fut.set_result(
                    RecordMetadata(topic, partition, tp, offset, entry[3] / 1000.0, None)
                )
        self.records_sent += len(items)

    def _refused(self, sent: streams.Batch, items: list[_Pending], error: ResponseError) -> None:
        if "FENCED" in str(error):
            self.records_fenced += len(items)
            log.warning("producer: %d records refused: %s", len(items), error)
            coordinator = self._coordinator()
            if coordinator is not None:
                # Another generation owns the partition: ours is over, whatever we
                # heard last (no commit may follow these).
                coordinator.lapsed(items[0][4], str(error))
            fenced = WriteFenced(str(error))
            for item in items:
                if not item[3].done():
                    item[3].set_exception(fenced)
            return
        log.error(
            "producer: Redis refused %d records for %s[%d]: %s",
            len(items), sent.topic, sent.partition, error,
        )  # fmt: skip
        self._fail_lost(items, error)
