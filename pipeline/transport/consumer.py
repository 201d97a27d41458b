"""The Faust consumer of the Redis Streams transport.

Reads with plain ``XREAD`` from positions it owns (one stream per topic partition, see
:mod:`.streams`), never ``XREADGROUP``: Faust needs partition ownership, seek
and replay, which Redis consumer groups do not give. Ownership, generations and
fenced commits come from :class:`pipeline.coordination.GroupCoordinator`, which runs
Faust's own ``PartitionAssignor`` on the group leader. Each committed position is
mirrored into a Redis consumer group named after the application (``XGROUP SETID``)
so that ``XINFO GROUPS`` shows every application's lag with standard tooling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, cast

import redis.asyncio as aioredis
from aiokafka.coordinator.protocol import (  # type: ignore[import-untyped]
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from faust.assignor import PartitionAssignor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage
from redis.exceptions import ResponseError

from pipeline.transport import epochs, streams
from pipeline.transport.clients import connect, is_cluster
from pipeline.transport.compaction import Compactor
from pipeline.transport.coordination import GroupCoordinator
from pipeline.transport.errors import TRANSIENT_ERRORS, CommitRefused
from pipeline.transport.guards import ConsumerGuards
from pipeline.transport.keys import stream_key, tp_field
from pipeline.transport.tasks import cancel_and_wait

if TYPE_CHECKING:
    from pipeline.transport.driver import Transport

log = logging.getLogger(__name__)

#: Environment variable setting an explicit static member id (see ``_default_member_id``).
MEMBER_ID_ENV = "LIVECOACH_MEMBER_ID"
#: Longest single XREAD block, so seeks and rebalances are noticed quickly.
MAX_BLOCK_MS = 200
#: Default session timeout when Faust's (60 s) is larger.
DEFAULT_SESSION_TIMEOUT_S = 10.0

#: The drain loop (see ``Consumer._drain_messages``) the running task belongs to.
_DRAINER: ContextVar[int] = ContextVar("livecoach_drainer", default=0)


#: Header of a batched read's message: the offsets of its entries, ``first-last`` when
#: consecutive (always, but for entries deleted in between), else comma-separated.
BATCH_OFFSETS_HEADER = "offsets"
#: Header of a batched read's message when any of its entries had a W3C ``traceparent``
#: header: theirs, comma-separated in entry order (empty for an entry without one).
BATCH_TRACEPARENTS_HEADER = "traceparents"
_TRACEPARENT = "traceparent"


def _joined(batch: list[Record]) -> Record:
    """Consecutive entries as one record: a JSON array of their values (see
    :func:`pipeline.transport.driver.read_in_batches`), with their offsets in a header.

    A tombstone (no value: batched topics are not changelogs, but nothing stops a
    producer) joins as ``null``, so that values and offsets stay aligned."""
    first, last = batch[0], batch[-1]
    value = b"[" + b",".join(b"null" if r.value is None else r.value for r in batch) + b"]"
    if last.offset - first.offset + 1 == len(batch):
        offsets = f"{first.offset}-{last.offset}".encode()
    else:
        offsets = ",".join(str(record.offset) for record in batch).encode()
    headers = {BATCH_OFFSETS_HEADER: offsets}
    parents = [(r.headers or {}).get(_TRACEPARENT, b"") for r in batch]
    if any(parents):
        headers[BATCH_TRACEPARENTS_HEADER] = b",".join(parents)
    return Record(last.offset, None, value, headers, last.timestamp_ms)


def batch_traceparents(header: bytes | None, count: int) -> list[bytes | None]:
    """The ``traceparent`` of each of ``count`` batched entries (None: it had none)."""
    if not header:
        return [None] * count
    parts = header.split(b",")
    if len(parts) != count:
        return [None] * count
    return [part or None for part in parts]


def batch_offsets(header: bytes) -> list[int]:
    """The entry offsets a batched message stands for, from its offsets header."""
    text = header.decode()
    if "-" in text:
        first, _, last = text.partition("-")
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(",")]


class Record:
    """One fetched entry; what ``_to_message`` turns into a Faust message."""

    __slots__ = ("headers", "key", "offset", "timestamp_ms", "value")

    def __init__(
        self,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: dict[str, bytes],
        timestamp_ms: int,
    ) -> None:
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp_ms = timestamp_ms


class _Cluster:
    """The little of aiokafka's ClusterMetadata that Faust's assignor reads."""

    def __init__(self, partitions: Mapping[str, int]) -> None:
        self._partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self._partitions.get(topic)
        return set(range(count)) if count else None

    @property
    def topics(self) -> set[str]:
        return set(self._partitions)


class Consumer(FaustConsumer, ConsumerGuards):
    """Faust consumer over Redis Streams."""

    consumer_stopped_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._redis: aioredis.Redis | None = None
        self._fetch_redis: aioredis.Redis | None = None
        self._subscription: set[str] = set()
        self._sent_subscription: set[str] | None = None
        self._assignment: set[TP] = set()
        self._position: dict[TP, int] = {}
        self._highwater: dict[TP, int] = {}
        #: Entries handed to the agents per topic, since the start (counted per read:
        #: Faust's ``on_message_in`` sensor hook is not called for ``noack()`` streams).
        self.entries_read: defaultdict[str, int] = defaultdict(int)
        #: Counts seeks: a read made before one is stale.
        self._seek_epoch = 0
        #: Seeks per partition, and their counts when the last read was made.
        self._tp_seeks: dict[TP, int] = {}
        self._read_seeks: dict[TP, int] = {}
        #: Batched reads delivered and not yet committed: tp -> {offset of the batch's
        #: message (its last entry): the first offset the batch stands for}.
        self._batch_first: dict[TP, dict[int, int]] = {}
        self._last_read_at = 0.0
        #: On a Redis Cluster, the node each partition was last read from.
        self._nodes: dict[TP, str] = {}
        self._coordinator: GroupCoordinator | None = None
        self._mirrored_groups: set[str] = set()
        self._init_guards()
        self._compactor: Compactor | None = None
        self._compaction_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        conf = self.app.conf
        self.session_timeout_s = min(float(conf.broker_session_timeout), DEFAULT_SESSION_TIMEOUT_S)
        self.group = str(conf.id)
        self.member_id = ""  # chosen at start: the command line may turn the web server off
        #: The current drain loop; an older one still running reads and delivers nothing.
        self._drainer = 0
        self.max_records = int(conf.broker_max_poll_records or 1000)

    @property
    def _rt(self) -> Transport:
        """Our transport, typed (Faust types it as the generic TransportT)."""
        return cast("Transport", self.transport)

    @property
    def _assignor(self) -> PartitionAssignor:
        return cast(PartitionAssignor, self.app.assignor)

    def _default_member_id(self) -> str:
        """``host:web-bind:web-port`` while Faust's web server runs, else ``host:pid:random``.

        Faust starts its web server before the consumer, so a live process holds that
        port: no two live processes share the id, and a restarted worker takes over
        its dead predecessor's membership at once (Kafka's static membership) instead
        of waiting out the session timeout. Without the web server (``--without-web``,
        or one started later, after table recovery) the id is unique to the process.
        Either way every start is a new incarnation (see :mod:`.coordination`).
        """
        host = socket.gethostname()
        conf = self.app.conf
        if conf.web_enabled and getattr(self.app, "_web_server_service", None) is None:
            return f"{host}:{conf.web_bind}:{conf.web_port}"
        return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"

    @property
    def coordinator(self) -> GroupCoordinator | None:
        """Our group membership (None before start): it fences the producer's writes."""
        return self._coordinator

    @property
    def transport_redis(self) -> aioredis.Redis:
        assert self._redis is not None, "consumer not started"
        return self._redis

    # --- lifetime ---------------------------------------------------------------------

    async def on_start(self) -> None:
        url = self._rt.redis_url
        self._redis = await connect(url)
        # XREAD BLOCK holds its connection: give the fetcher a client of its own, with
        # no retry, so that a broken connection (maybe a restarted server) is noticed.
        # On a Redis Cluster it keeps the retries: without them redis-py's cluster
        # client never replaces a dead default node (measured: fetches failed for good
        # after a kill -9 of the seed node's primary). There a failover is noticed when
        # a partition's node changes (_partition_moved), and errors that outlast the
        # retries still reach us.
        self._fetch_redis = await connect(url, retry=is_cluster(self._redis))
        if not is_cluster(self._redis):  # a cluster's runs are per partition (guards)
            self._start_run = await epochs.server_run(self._redis)
        if self.app.client_only:
            # A command, ``faust send`` or ``agent.ask()`` outside a worker: it reads its
            # own (reply) topics directly and never joins the workers' group.
            await super().on_start()
            return
        self.member_id = os.environ.get(MEMBER_ID_ENV) or self._default_member_id()
        self._coordinator = GroupCoordinator(
            self._redis,
            self.group,
            self.member_id,
            session_timeout_s=self.session_timeout_s,
            metadata=self._member_metadata,
            assign=self._run_assignor,
            revoke=self._revoke,
            assign_local=self._assign_local,
        )
        self._coordinator.on_lease_lapsed = self._on_lease_lapsed
        tunables = self._rt.tunables
        self._compactor = Compactor(self._redis, delete_retention_s=tunables.delete_retention_s)
        self._compaction_task = asyncio.create_task(
            self._compactor.run(self._compactable, tunables.compaction_interval_s),
            name="compaction",
        )
        self._retention_task = asyncio.create_task(self._retention_loop(), name="retention")
        await super().on_start()

    async def _retention_loop(self) -> None:
        """The group leader trims topics with an age retention (any member could).

        Every member marks the group alive at start and every pass, so that the leader
        of any group never trims past this group's commits (registered again after
        Redis lost it).
        """
        first = True
        while True:
            if not first:
                await asyncio.sleep(self._rt.tunables.retention_interval_s)
            try:
                await streams.register_group(self.transport_redis, self.group)
            except TRANSIENT_ERRORS as exc:
                log.warning("registering group %s failed (%r)", self.group, exc)
                continue
            finally:
                first = False
            if self._coordinator is None or not self._coordinator.is_leader:
                continue
            try:
                removed = await streams.apply_age_retention(
                    self.transport_redis, group_expiry_s=self._rt.tunables.group_expiry_s
                )
            except TRANSIENT_ERRORS as exc:
                log.warning("age retention pass failed (%r)", exc)
                continue
            if removed:
                log.info("age retention removed %d entries", removed)

    def _compactable(self) -> list[tuple[str, int]]:
        """Changelog partitions we are active for (each has one compacting owner)."""
        changelogs = self.app.tables.changelog_topics
        return sorted(
            (tp.topic, tp.partition)
            for tp in self._assignor.assigned_actives()
            if tp.topic in changelogs and tp in self._assignment
        )

    async def on_stop(self) -> None:
        await cancel_and_wait(self._compaction_task, self._retention_task)
        await super().on_stop()  # commits
        if self._coordinator is not None:
            await self._coordinator.stop()
        for client in (self._fetch_redis, self._redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def close(self) -> None:
        pass

    # --- subscription and rebalancing -------------------------------------------------

    async def subscribe(self, topics: Iterable[str]) -> None:
        # Only *schedule* the rebalance: Faust's assignment handler waits for the
        # subscription to finish, so rebalancing in here would deadlock.
        self._subscription = set(topics)
        if self.app.client_only:
            await self._assign_client_only(self._subscription)
            return
        coordinator = self._coordinator
        if coordinator is None:
            return
        if not coordinator._tasks:
            coordinator.start()
        elif self._sent_subscription != self._subscription:
            coordinator.request_rebalance()

    async def _assign_client_only(self, topics: set[str]) -> None:
        """Read every partition of ``topics`` ourselves, without a group or commits.

        A new partition starts where ``consumer_auto_offset_reset`` says, as Kafka's
        group-less consumer does (Faust's default is earliest): ``agent.ask()`` sends
        its request before it subscribes to the reply topic, so the reply may already
        be there (a per-process reply topic holds nothing older).
        """
        tps = set()
        for topic in sorted(topics):
            tps |= {TP(topic, p) for p in range(await self._partitions(topic))}
        latest = str(self.app.conf.consumer_auto_offset_reset) == "latest"
        r = self.transport_redis
        for tp in sorted(tps - set(self._position)):
            where = streams.highwater if latest else streams.earliest
            self._set_position(tp, await where(r, tp.topic, tp.partition))
        self._assignment = tps
        self._position = {tp: pos for tp, pos in self._position.items() if tp in tps}
        if is_cluster(r):  # each partition's run, which later checks compare with
            runs, _ = await self._runs_now(tps)
            self._remember_runs(runs)

    async def _member_metadata(self) -> bytes:
        topics = set(self._subscription)
        self._sent_subscription = topics
        metadata = self._assignor.metadata(topics)
        return cast(bytes, metadata.encode())

    async def _run_assignor(self, metas: Mapping[str, bytes]) -> Mapping[str, bytes]:
        members = {m: ConsumerProtocolMemberMetadata.decode(b) for m, b in metas.items()}
        topics = {t for md in members.values() for t in md.subscription}
        counts: dict[str, int] = {}
        for topic in sorted(topics):
            counts[topic] = await self._partitions(topic)
        result = self._assignor.assign(_Cluster(counts), members)
        return {m: cast(bytes, a.encode()) for m, a in result.items()}

    async def _partitions(self, topic: str) -> int:
        return await self._rt.stored_partitions(self.transport_redis, topic)

    async def _revoke(self) -> None:
        self.app.on_rebalance_start()
        revoked = set(self._assignment)
        await self.on_partitions_revoked(revoked)

    async def _assign_local(self, generation: int, raw: bytes) -> None:
        assignment = ConsumerProtocolMemberAssignment.decode(raw)
        if not self.app.rebalancing:
            self.app.on_rebalance_start()
            await self.on_partitions_revoked(set(self._assignment))
        self._assignor.on_assignment(assignment)
        tps = {TP(topic, p) for topic, partitions in assignment.assignment for p in partitions}
        for topic in {tp.topic for tp in tps}:
            await self._partitions(topic)
        self._assignment = tps
        self._position = {tp: pos for tp, pos in self._position.items() if tp in tps}
        self._batch_first = {}  # what was read before is read again from the commits
        self.app.consumer_generation_id = generation
        await self._claim_changelogs(generation, tps)
        self._on_assigned()
        await self.on_partitions_assigned(tps, generation)

    def assignment(self) -> set[TP]:
        return set(self._assignment)

    # --- positions --------------------------------------------------------------------

    async def seek_to_committed(self) -> Mapping[TP, int]:  # None: not committed
        assert self._coordinator is not None
        tps = sorted(self._assignment)
        committed = await self._coordinator.committed(
            [tp_field(tp.topic, tp.partition) for tp in tps]
        )
        committed = await self._check_committed(tps, committed)
        result: dict[TP, int | None] = {}
        positions: dict[TP, int] = {}
        reset_latest = str(self.app.conf.consumer_auto_offset_reset) == "latest"
        r = self.transport_redis
        for tp in tps:
            offset = committed[tp_field(tp.topic, tp.partition)]
            if offset is None:
                if reset_latest:
                    positions[tp] = await streams.highwater(r, tp.topic, tp.partition)
                else:
                    positions[tp] = await streams.earliest(r, tp.topic, tp.partition)
            else:
                positions[tp] = offset
            result[tp] = offset
        # Every position at once, after the last await: Faust sets its read offsets
        # from our answer without yielding in between. Positions set one by one across
        # awaits let the fetch loop deliver records between our seek and Faust's; Faust
        # then took the jump from its reset read offset for a gap in the log, counted
        # the records in it as processed and committed past records it never processed
        # (found by test_kill_9_twenty_times on a loaded host: 2,068 of 33,820 lost).
        for tp, position in positions.items():
            self._set_position(tp, position)
        return cast(Mapping[TP, int], result)

    def _set_position(self, tp: TP, offset: int) -> None:
        self._position[tp] = offset
        self._seek_epoch += 1
        self._tp_seeks[tp] = self._tp_seeks.get(tp, 0) + 1
        # Batches read before a seek are read again from there; they are never acked.
        self._batch_first.pop(tp, None)

    async def _seek(self, partition: TP, offset: int) -> None:
        self._set_position(partition, int(offset))

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        for tp, offset in partitions.items():
            self._set_position(tp, int(offset))

    async def seek_to_beginning(self, *partitions: TP) -> None:
        earliest = await self.earliest_offsets(*partitions)
        for tp, offset in earliest.items():
            self._set_position(tp, offset)

    async def position(self, tp: TP) -> int | None:
        return self._position.get(tp)

    def highwater(self, tp: TP) -> int:
        return self._highwater.get(tp, 0)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        r = self.transport_redis
        result = {}
        for tp in partitions:
            result[tp] = await streams.highwater(r, tp.topic, tp.partition)
            self._highwater[tp] = result[tp]
        return result

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        r = self.transport_redis
        return {tp: await streams.earliest(r, tp.topic, tp.partition) for tp in partitions}

    def topic_partitions(self, topic: str) -> int | None:
        return self._rt.partition_counts.get(topic)

    def key_partition(self, topic: str, key: bytes | None, partition: int | None = None) -> int:
        if partition is not None:
            return partition
        return self._rt.partition_for(topic, key)

    async def create_topic(
        self, topic: str, partitions: int, replication: int, **kwargs: Any
    ) -> None:
        await self._rt.declare_topic(self.transport_redis, topic, partitions, **kwargs)

    def _new_topicpartition(self, topic: str, partition: int) -> TP:
        return TP(topic, partition)

    # --- fetching ---------------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (Faust's loop)
        """Faust's fetch loop, handing each read to the streams in one step.

        Faust's own loop waits on every message with ``Service.wait_first`` (four tasks
        and an ``asyncio.wait`` each, so that a suspended flow interrupts a delivery
        blocked on a full stream buffer) and sleeps through ``Service.sleep`` before
        every read. At a thousand messages a second that bookkeeping cost more than
        the agents' work, and each of its event-loop turns delayed the next read. Here
        one ``wait_first`` covers the delivery of a whole read, with the same outcome:
        a flow suspended meanwhile abandons the rest of the read, which is fetched
        again from the committed offsets once the flow resumes.
        """
        consumer_stopped = cast(Any, self)._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        # A loop whose cancel was swallowed may still run beside this one; from now on
        # its reads return nothing and leave the positions alone, and it ends.
        self._drainer += 1
        mine = self._drainer
        _DRAINER.set(mine)
        try:
            while not (consumer_stopped() or fetcher_stopped()) and self._drainer == mine:
                self.diag.set_flag(CONSUMER_FETCHING)
                try:
                    messages = [pair async for pair in self.getmany(timeout=1.0)]
                    if messages and not self.should_stop and self._drainer == mine:
                        deliver = self._deliver(messages, mine, self._read_seeks)
                        await self.wait_first(deliver, self.suspend_flow.wait())
                    else:
                        await asyncio.sleep(0)  # never hold the loop between empty reads
                finally:
                    self.diag.unset_flag(CONSUMER_FETCHING)
        except asyncio.CancelledError:
            # Cancelled by a stopping worker (e.g. while waiting for a suspended flow to
            # resume): a normal end, as in Faust's loop, not a crash (exit status 1).
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver(
        self,
        messages: list[tuple[TP, Message]],
        drainer: int = 0,
        seeks: Mapping[TP, int] | None = None,
    ) -> None:
        """Faust's per-message part of its fetch loop: gaps, commits, delivery.

        ``seeks``: each partition's seek count when the messages were read. A record of
        a partition sought since is stale and dropped (the seek says where to read):
        Faust has reset its read offset, and the stale record would look like a jump
        past a gap, which Faust counts as processed.
        """
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        sought = self._tp_seeks
        for tp, message in messages:
            if self.suspend_flow.is_set() or (drainer and drainer != self._drainer):
                return
            if seeks is not None and sought.get(tp, 0) != seeks.get(tp, 0):
                continue
            offset = message.offset
            r_offset = read_offset[tp]
            if r_offset is not None and offset < r_offset:
                continue  # already delivered (Faust drops it the same way)
            if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                if tp.topic not in self._rt.batched_topics:
                    # Offsets are consecutive: only trimming makes a gap, and Faust
                    # counts the offsets in it as processed.
                    log.warning(
                        "%s[%d]: offsets %d-%d skipped (trimmed before they were read?); "
                        "counted as processed", tp.topic, tp.partition, r_offset + 1, offset - 1,
                    )  # fmt: skip
                await self._add_gap(tp, r_offset + 1, offset)
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
            await callback(message)
            read_offset[tp] = offset

    async def _getmany(
        self,
        active_partitions: set[TP] | None,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> Mapping[TP, list[Record]]:
        coordinator = self._coordinator
        client_only = self.app.client_only  # reads without a group, see subscribe()
        drainer = _DRAINER.get()
        if (
            not self.flow_active
            or (drainer and drainer != self._drainer)  # a stale drain loop
            or (not client_only and (coordinator is None or not coordinator.may_fetch()))
        ):
            await asyncio.sleep(min(timeout, 0.05))
            return {}
        if self._run_check_due and not await self._check_server_run():
            await asyncio.sleep(min(timeout, 0.5))
            return {}
        if self._awaiting_rebalance:
            await asyncio.sleep(min(timeout, 0.05))
            return {}
        if client_only:  # Faust passes None: every partition
            tps = list(self._position)
        else:
            tps = [tp for tp in (active_partitions or ()) if tp in self._position]
        if not tps:
            await asyncio.sleep(min(timeout, 0.05))
            return {}
        batched = self._rt.batched_topics
        linger = max((batched.get(tp.topic, 0.0) for tp in tps), default=0.0)
        if linger and (wait := self._last_read_at + linger - time.monotonic()) > 0:
            await asyncio.sleep(min(wait, timeout))
        streams_arg: dict[Any, Any] = {
            stream_key(tp.topic, tp.partition): f"0-{self._position[tp]}" for tp in tps
        }
        by_key = {stream_key(tp.topic, tp.partition): tp for tp in tps}
        epoch = self._seek_epoch
        generation = coordinator.generation if coordinator is not None else 0
        assert self._fetch_redis is not None
        block_ms = max(1, min(MAX_BLOCK_MS, int(timeout * 1000)))
        try:
            # One XREAD for every partition (on a Redis Cluster, one per node).
            reply = await streams.xread_streams(
                self._fetch_redis, streams_arg, count=self.max_records, block_ms=block_ms
            )
        except TRANSIENT_ERRORS as exc:
            log.warning("fetch from %s failed (%r: %s); retrying", self._rt.redis_url, exc, exc)
            self._run_check_due = self._commits_held = True
            await asyncio.sleep(0.5)
            return {}
        self._last_read_at = time.monotonic()
        if self._partition_moved(by_key):
            # A failover or resharding the cluster client followed by itself (a broken
            # connection makes the check due above): did the new node lose records?
            self._run_check_due = self._commits_held = True
        if (
            not reply
            or epoch != self._seek_epoch  # a seek happened meanwhile: refetch from there
            or (drainer and drainer != self._drainer)  # a newer drain loop took over
            or (
                coordinator is not None
                and (
                    generation != coordinator.generation
                    or not coordinator.may_fetch()  # frozen past our lease: not ours
                )
            )
        ):
            return {}
        records: dict[TP, list[Record]] = {}
        decode = streams.decode_entry
        offset_of = streams.offset_of
        for raw_key, entries in reply:
            tp = by_key[raw_key.decode() if isinstance(raw_key, bytes) else raw_key]
            batch = []
            for entry_id, fields in entries:
                key, value, headers, ts = decode(fields)
                batch.append(Record(offset_of(entry_id), key, value, headers, ts))
            if batch:
                self.entries_read[tp.topic] += len(batch)
                if tp.topic in batched:
                    # From where the read started: entries trimmed away meanwhile are
                    # skipped with the batch (and committed with it).
                    self._batch_first.setdefault(tp, {})[batch[-1].offset] = self._position[tp]
                    records[tp] = [_joined(batch)]
                else:
                    records[tp] = batch
                nxt = batch[-1].offset + 1
                self._position[tp] = nxt
                if nxt > self._highwater.get(tp, 0):
                    self._highwater[tp] = nxt
        self._read_seeks = {tp: self._tp_seeks.get(tp, 0) for tp in records}
        return records

    def _partition_moved(self, by_key: Mapping[str, TP]) -> bool:
        """On a Redis Cluster: whether a partition read is now on another node than at
        the last read (always False on one server)."""
        fetch = self._fetch_redis
        if not is_cluster(fetch):
            return False
        moved = False
        for key, tp in by_key.items():
            node = fetch.get_node_from_key(key).name
            if self._nodes.setdefault(tp, node) != node:
                self._nodes[tp] = node
                moved = True
        return moved

    def _to_message(self, tp: TP, record: Record) -> ConsumerMessage:
        headers = list(record.headers.items())
        if record.value == b"" and tp.topic in self.app.tables.changelog_topics:
            record.value = None  # a delete written before tombstones existed
        return ConsumerMessage(
            tp.topic,
            tp.partition,
            record.offset,
            record.timestamp_ms / 1000.0,
            0,
            headers,
            record.key,
            record.value,
            None,
            len(record.key) if record.key is not None else 0,
            len(record.value) if record.value is not None else 0,
            tp,
            generation_id=self.app.consumer_generation_id,
        )

    # --- acks of batched reads -------------------------------------------------------

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # A batched read's message carries its last offset, so Faust sees the rest of
        # the batch as a gap; its interval tree costs more than the whole event once a
        # few thousand batches await their acks. _new_offset covers them instead.
        if tp.topic not in self._rt.batched_topics:
            await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp: TP) -> int | None:
        # Faust acks a message in several places (its Cython stream iterator inlines
        # the ack), so the entries of an acked batch are added here, where Faust
        # computes what it may commit.
        batches = self._batch_first.get(tp)
        if batches:
            index = self._acked_index[tp]
            done = [last for last in batches if last in index]
            committed = self._committed_offset[tp]
            acked = self._acked[tp]
            for last in done:
                first = batches.pop(last)
                start = first if committed is None else max(first, committed)
                interior = [offset for offset in range(start, last) if offset not in index]
                index.update(interior)
                acked.extend(interior)
            # Batches may be acked out of order (the live agent acks a record once its
            # session's state is saved). Faust would commit past one unacked offset
            # right after the committed one, or past anything before its first commit;
            # a batch still out bounds the commit instead.
            if batches and acked and min(batches.values()) < min(acked):
                return None
        return super()._new_offset(tp)

    # --- commits ----------------------------------------------------------------------

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        coordinator = self._coordinator
        if coordinator is None or not offsets:
            return False
        if self._commits_held:
            # Redis may have restarted with less than we read: commit nothing until
            # that is checked (these offsets may be beyond what it holds now).
            log.info("commit deferred: checking the server after a connection error")
            return False
        fields = {tp_field(tp.topic, tp.partition): int(o) for tp, o in offsets.items()}
        try:
            await coordinator.commit(fields)
        except CommitRefused as exc:
            log.warning("commit refused: %s", exc)
            return False
        except TRANSIENT_ERRORS as exc:
            log.warning("commit failed (%r); the next commit retries", exc)
            return False
        await self._mirror(offsets)
        return True

    async def _mirror(self, offsets: Mapping[TP, int]) -> None:
        """Show the committed position as the app's Redis consumer group (for XINFO)."""
        r = self.transport_redis
        try:
            # Offset o is entry 0-<o+1> and the committed offset is the next one to
            # read, so the group has delivered up to 0-<offset> and read ``offset``
            # entries: with ENTRIESREAD (Redis 7) XINFO GROUPS shows lag = highwater -
            # offset. Redis 6.2 has no ENTRIESREAD (nor lag in XINFO).
            read: int | None
            counted = await streams.tracks_entries_read(r)
            async with r.pipeline(transaction=False) as pipe:
                for tp, offset in offsets.items():
                    key = stream_key(tp.topic, tp.partition)
                    read = int(offset) if counted else None
                    if key not in self._mirrored_groups:
                        pipe.xgroup_create(
                            key, self.group, id=f"0-{offset}", mkstream=True, entries_read=read
                        )
                    pipe.xgroup_setid(key, self.group, id=f"0-{offset}", entries_read=read)
                results = await pipe.execute(raise_on_error=False)
        except TRANSIENT_ERRORS:
            return
        for result in results:
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                log.debug("mirroring commit failed: %r", result)
        for tp in offsets:
            self._mirrored_groups.add(stream_key(tp.topic, tp.partition))

    def verify_event_path(self, now: float, tp: TP) -> None:
        return None
