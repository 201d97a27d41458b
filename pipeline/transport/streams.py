"""Layout of topics in Redis: one stream per topic partition.

Shared by the Faust transport (:mod:`pipeline.transport`) and by code that reads or
writes topics without Faust (the web edge). This module is the stable, Faust-free API:

* :func:`stream_key` names the stream of a topic partition. The ``{topic:partition}``
  hash tag keeps each partition on one Cluster slot while spreading partitions.
* Offsets are consecutive integers per partition: offset ``o`` is stored under the
  explicit stream id ``0-<o+1>`` (:func:`stream_id`, :func:`offset_of`). Redis 7 fills
  in the sequence itself (``XADD key 0-* ...``); Redis 6.2 has no ``0-*``, so the
  append computes it from the stream's ``last-generated-id``. Both survive trimming and
  restarts with AOF. The append is a Lua function on Redis 7 (``FCALL``) and the same
  code as a script on 6.2 (``EVALSHA``); either is loaded once and again when Redis
  answers that it lacks it (:func:`script_missing`).
* An entry has the fields ``v`` (value bytes), ``t`` (timestamp in ms), ``k`` (key
  bytes, absent for a ``None`` key) and ``h.<name>`` per header. A ``None`` value (a
  tombstone: Faust's table delete) has no ``v`` field and reads back as ``None``.
* :func:`partition_for_key` is Kafka's default partitioner (murmur2), so a key lands
  on the partition Kafka would choose.
* Retention per topic (:class:`Retention`) is kept in Redis: ``maxlen`` trims with
  ``MAXLEN ~`` on every append, ``max_age_ms`` is applied by :func:`trim_by_age`, never
  past the lowest offset committed by a consumer group (:func:`apply_age_retention`).
* Topic metadata (stored partition counts, incarnations, groups, :func:`delete_topic`)
  lives in :mod:`pipeline.transport.topics` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from pipeline.transport import append_script, replicated
from pipeline.transport.clients import is_cluster
from pipeline.transport.errors import NotReplicated, TopicError
from pipeline.transport.idempotence import (
    ProducerIdentity,
    default_identity,
)
from pipeline.transport.keys import (
    INCARNATIONS_KEY,
    RETENTION_KEY,
    TOPICS_KEY,
    epochs_key,
    fence_key,
    producer_key,
    tp_field,
)
from pipeline.transport.keys import stream_key as stream_key  # re-exported: the public API
from pipeline.transport.topics import (
    GROUP_EXPIRY_S,
    group_commits,
    live_groups,
    new_incarnation,
)
from pipeline.transport.topics import delete_topic as delete_topic  # re-exported
from pipeline.transport.topics import ensure_partition_count as ensure_partition_count
from pipeline.transport.topics import incarnation as incarnation  # re-exported
from pipeline.transport.topics import register_group as register_group  # re-exported

log = logging.getLogger(__name__)

#: (key, value, headers, timestamp_ms) of one record; a None value is a tombstone.
Entry: TypeAlias = tuple[bytes | None, bytes | None, Mapping[str, bytes] | None, int]
#: (key, value, headers, timestamp_ms) as read back.
Decoded: TypeAlias = tuple[bytes | None, bytes | None, dict[str, bytes], int]
Fields: TypeAlias = Mapping[bytes, bytes] | Mapping[str, bytes] | Mapping[Any, Any] | Any

FIELD_KEY = b"k"
FIELD_VALUE = b"v"
FIELD_TIMESTAMP = b"t"
HEADER_PREFIX = b"h."


def stream_id(offset: int) -> str:
    """The stream id that stores ``offset`` (offset 0 is ``0-1``)."""
    return f"0-{offset + 1}"


def offset_of(entry_id: bytes | str | Any) -> int:
    """The offset stored under a stream id of the form ``0-<offset+1>``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    _, _, seq = text.partition("-")
    return int(seq) - 1


# --- partitioning ---------------------------------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as in ``org.apache.kafka.common.utils.Utils``), unsigned."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


@functools.lru_cache(maxsize=65536)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (cached: keys repeat)."""
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# --- entries --------------------------------------------------------------------------


def encode_entry(
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes] | None,
    timestamp_ms: int,
) -> dict[bytes, bytes]:
    """The stream fields of one record (no ``v`` field for a ``None`` value: a tombstone).

    An empty value and a deleted one must stay apart: Faust deletes a table key by
    writing ``None`` to its changelog, and recovery decodes anything else as a value.
    """
    fields: dict[bytes, bytes] = {FIELD_TIMESTAMP: str(int(timestamp_ms)).encode()}
    if value is not None:
        fields[FIELD_VALUE] = value
    if key is not None:
        fields[FIELD_KEY] = key
    if headers:
        for name, header in headers.items():
            fields[HEADER_PREFIX + name.encode()] = header if header is not None else b""
    return fields


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def decode_entry(fields: Fields) -> Decoded:
    """(key, value, headers, timestamp_ms) from the fields of an entry (value None:
    a tombstone)."""
    key: bytes | None = None
    value: bytes | None = None
    timestamp_ms = 0
    headers: dict[str, bytes] = {}
    for raw_name, raw in fields.items():
        name = _b(raw_name)
        data = _b(raw)
        if name == FIELD_VALUE:
            value = data
        elif name == FIELD_KEY:
            key = data
        elif name == FIELD_TIMESTAMP:
            timestamp_ms = int(data)
        elif name.startswith(HEADER_PREFIX):
            headers[name[len(HEADER_PREFIX) :].decode()] = data
    return key, value, headers, timestamp_ms


# --- appending ------------------------------------------------------------------------

#: Server runs remembered per partition (see :mod:`pipeline.transport.epochs`).
EPOCHS_KEPT = 16


@dataclass
class _ServerInfo:
    #: Redis 7: ``XADD key 0-*``, and ``XGROUP SETID ... ENTRIESREAD`` (so XINFO shows lag).
    has_seq_autogen: bool
    #: The append command's first two words once loaded: ("EVALSHA", sha) on 6.2,
    #: ("FCALL", name) on 7.
    append_call: tuple[str, str] | None = None
    #: topic -> (when read, its retention): appends look it up once per refresh.
    retentions: dict[str, tuple[float, Retention | None]] = field(default_factory=dict)


#: How long an appender trusts the retention it read (other processes may change it).
RETENTION_REFRESH_S = 10.0


_servers: weakref.WeakKeyDictionary[Any, _ServerInfo] = weakref.WeakKeyDictionary()


async def _server(redis: aioredis.Redis | RedisCluster) -> _ServerInfo:
    owner = getattr(redis, "connection_pool", redis)  # a cluster client has no pool
    info = _servers.get(owner)
    if info is None:
        server: Any = await redis.info("server")
        if "redis_version" not in server:  # a cluster client: one answer per node
            server = min(server.values(), key=lambda node: str(node["redis_version"]))
        major = int(str(server["redis_version"]).split(".")[0])
        info = _ServerInfo(has_seq_autogen=major >= 7)
        _servers[owner] = info
    return info


async def tracks_entries_read(redis: aioredis.Redis) -> bool:
    """Whether the server takes ``ENTRIESREAD`` in ``XGROUP CREATE/SETID`` (Redis 7+)."""
    return (await _server(redis)).has_seq_autogen


async def _load_append(redis: aioredis.Redis, info: _ServerInfo, reload: bool = False) -> None:
    if info.append_call is not None and not reload:
        return
    if not info.has_seq_autogen:  # 6.2: no functions
        info.append_call = ("EVALSHA", str(await redis.script_load(append_script.SCRIPT)))
        return
    try:
        await redis.function_load(append_script.LIBRARY)
    except ResponseError as exc:
        if "already exists" not in str(exc):
            raise
    info.append_call = ("FCALL", append_script.FUNCTION_NAME)


def script_missing(exc: BaseException) -> bool:
    """Whether Redis answered that it lacks the append script or function: it restarted
    without its data, was flushed, or is a node that never had it. Load it again."""
    if isinstance(exc, NoScriptError):
        return True
    return isinstance(exc, ResponseError) and (
        "NOSCRIPT" in str(exc) or "Function not found" in str(exc)
    )


@dataclass(frozen=True, slots=True)
class Batch:
    """Records appended to one partition together, under one batch sequence."""

    topic: str
    partition: int
    entries: Sequence[Entry]
    #: Trim the partition to about this many entries (``MAXLEN ~``); None: no trim.
    maxlen: int | None = None
    #: The batch's sequence number (:meth:`ProducerIdentity.next_sequence`; 0: not
    #: idempotent). A batch sent again keeps it, so Redis appends it once.
    sequence: int = 0
    #: Refused unless the partition's fence (:func:`set_fence`) holds this token.
    fence: str = ""
    #: Refused once Redis's clock is past the call's lease end.
    leased: bool = False


#: One batch's append: (its offsets, whether Redis had it already), or why it was refused.
Outcome: TypeAlias = tuple[list[int], bool] | ResponseError


def append_calls(
    server: _ServerInfo,
    batches: Sequence[Batch],
    *,
    identity: ProducerIdentity | None = None,
    lease_end_ms: int = 0,
    one_each: bool = False,
) -> list[tuple[list[int], tuple[bytes | str | int, ...]]]:
    """The calls that append ``batches``: [(indexes of their batches, command)].

    One call for all of them, or one per batch with ``one_each``: on a Redis Cluster (a
    call's keys must share a slot), or to resend batches whose shared call failed as a
    whole. A ``lease_end_ms`` (server time) refuses the ``leased`` batches once Redis's
    clock has passed it. Read each call's result with :func:`outcomes`.
    """
    groups = [[i] for i in range(len(batches))] if one_each else [list(range(len(batches)))]
    producer_id = identity.producer_id if identity is not None else "-"
    assert server.append_call is not None
    calls = []
    for indexes in groups:
        keys: list[str] = []
        args: list[bytes | str | int] = [
            1 if server.has_seq_autogen else 0,
            identity.state_ttl_ms if identity is not None else 0,
            identity.window if identity is not None else 1,
            EPOCHS_KEPT,
            lease_end_ms,
        ]
        for i in indexes:
            batch = batches[i]
            topic, partition = batch.topic, batch.partition
            keys += (
                stream_key(topic, partition),
                producer_key(topic, partition, producer_id),
                epochs_key(topic, partition),
                fence_key(topic, partition),
            )
            args += (
                batch.maxlen or 0,
                batch.sequence if identity is not None else 0,
                batch.fence,
                1 if batch.leased else 0,
                len(batch.entries),
            )
            for k, v, h, ts in batch.entries:
                flat = _flatten(encode_entry(k, v, h, ts))
                args.append(len(flat))
                args += flat
        calls.append((indexes, (*server.append_call, len(keys), *keys, *args)))
    return calls


def outcomes(result: Sequence[Any], batches: Sequence[Batch]) -> list[Outcome]:
    """What each of a call's ``batches`` came to, from the call's (successful) result."""
    out: list[Outcome] = []
    for batch, answer in zip(batches, result, strict=True):
        if isinstance(answer, (bytes, str)):  # refused: the script says why
            out.append(ResponseError(answer.decode() if isinstance(answer, bytes) else answer))
            continue
        first = int(answer[0])
        out.append((list(range(first, first + len(batch.entries))), bool(int(answer[1]))))
    return out


def _flatten(fields: Mapping[bytes, bytes]) -> list[bytes]:
    out: list[bytes] = []
    for name, value in fields.items():
        out.append(name)
        out.append(value)
    return out


async def prepare(redis: aioredis.Redis, *, reload_script: bool = False) -> _ServerInfo:
    """Server capabilities and the loaded append script, for :func:`append_calls`."""
    info = await _server(redis)
    await _load_append(redis, info, reload=reload_script)
    return info


async def set_fence(redis: aioredis.Redis, topic: str, partition: int, token: str) -> None:
    """Let only appends fenced with ``token`` into ``topic``/``partition`` from now on."""
    await redis.set(fence_key(topic, partition), token)


async def append(
    redis: aioredis.Redis,
    topic: str,
    partition: int,
    entries: Sequence[Entry],
    *,
    maxlen: int | None = None,
) -> list[int]:
    """Append records to one topic partition; returns their offsets, in order.

    ``maxlen`` trims the partition to about that many entries (``MAXLEN ~``); when it is
    None the topic's stored :class:`Retention` applies.
    """
    if not entries:
        return []
    return (await append_many(redis, topic, {partition: entries}, maxlen=maxlen))[partition]


async def append_many(
    redis: aioredis.Redis,
    topic: str,
    batches: Mapping[int, Sequence[Entry]],
    *,
    maxlen: int | None = None,
    identity: ProducerIdentity | None = None,
    replicas: int = 0,
    replica_timeout_ms: int = 0,
) -> dict[int, list[int]]:
    """Append to several partitions of a topic in one round trip: partition -> offsets.

    ``replicas`` > 0 ends the pipeline with ``WAIT replicas replica_timeout_ms``: it
    returns only once that many replicas hold every write of the pipeline's connection,
    else raises :class:`~.errors.NotReplicated` (the records are on the primary then,
    and may or may not survive a failover). On a Redis Cluster each node holding one of
    the partitions gets its own ``WAIT``, on the connection its appends went through
    (:mod:`.replicated`).

    Idempotent: each partition's batch carries a sequence number of ``identity`` (by
    default one identity per process), so a retry after a lost reply (redis-py's, or the
    one here after the script went missing) returns the offsets of the first attempt
    instead of appending again. Raises on the first partition Redis refused (none of the
    batch is acknowledged then; partitions that went through keep their records).
    """
    if maxlen is None:
        retention = await cached_retention(redis, topic)
        maxlen = retention.maxlen if retention else None
    if identity is None:
        identity = default_identity()
    todo = [
        Batch(topic, partition, entries, maxlen, identity.next_sequence(topic, partition))
        for partition, entries in batches.items()
        if entries
    ]
    reload = False
    for _attempt in range(2):
        info = await prepare(redis, reload_script=reload)
        cluster = is_cluster(redis)
        calls = append_calls(info, todo, identity=identity, one_each=cluster)
        try:
            if replicas and is_cluster(redis):
                results = await replicated.execute_with_wait(
                    redis,
                    [(stream_key(todo[i].topic, todo[i].partition), command)
                     for (i,), command in calls],
                    replicas=replicas,
                    timeout_ms=replica_timeout_ms,
                )  # fmt: skip
            else:
                async with redis.pipeline(transaction=False) as pipe:
                    for _, command in calls:
                        pipe.execute_command(*command)
                    if replicas:
                        # WAIT counts the writes of this connection: the pipeline's.
                        pipe.execute_command("WAIT", replicas, replica_timeout_ms)
                    results = await pipe.execute(raise_on_error=True)
        except ResponseError as exc:
            if not script_missing(exc):
                raise
            reload = True  # the server restarted and forgot the script, or a promoted
            continue  # replica never had it
        if replicas and not cluster:
            confirmed = int(results.pop())
            if confirmed < replicas:
                raise NotReplicated(
                    f"{confirmed} of {replicas} replica(s) confirmed the append to {topic} "
                    f"within {replica_timeout_ms} ms"
                )
        offsets: dict[int, list[int]] = {}
        for (indexes, _), result in zip(calls, results, strict=True):
            mine = [todo[i] for i in indexes]
            for batch, outcome in zip(mine, outcomes(result, mine), strict=True):
                if isinstance(outcome, ResponseError):
                    raise outcome
                offsets[batch.partition] = outcome[0]
        return offsets
    raise TopicError(f"could not load the append script on the server for {topic}")


# --- reading --------------------------------------------------------------------------


async def highwater(redis: aioredis.Redis, topic: str, partition: int) -> int:
    """The offset the next record of this partition gets (last offset + 1; 0 if empty)."""
    try:
        info = await redis.xinfo_stream(stream_key(topic, partition))
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    return offset_of(info["last-generated-id"]) + 1


async def earliest(redis: aioredis.Redis, topic: str, partition: int) -> int:
    """The first offset still held (the highwater when the partition is empty)."""
    first: Any = await redis.xrange(stream_key(topic, partition), "-", "+", count=1)
    if first:
        return offset_of(first[0][0])
    return await highwater(redis, topic, partition)


async def read(
    redis: aioredis.Redis,
    topic: str,
    partition: int,
    from_offset: int,
    *,
    count: int = 1000,
    block_ms: int | None = None,
) -> list[tuple[int, Decoded]]:
    """Records at ``from_offset`` and after: ``[(offset, (key, value, headers, ts_ms))]``.

    With ``block_ms`` waits up to that long for a record to arrive.
    """
    # XREAD returns entries with ids strictly greater than the one given.
    after = f"0-{from_offset}"
    key = stream_key(topic, partition)
    entries: Any
    if block_ms is None:
        entries = await redis.xrange(key, f"0-{from_offset + 1}", "+", count=count)
    else:
        reply: Any = await redis.xread({key: after}, count=count, block=block_ms)
        entries = reply[0][1] if reply else []
    return [(offset_of(eid), decode_entry(fields)) for eid, fields in entries]


async def read_many(
    redis: aioredis.Redis | RedisCluster,
    positions: Mapping[tuple[str, int], int],
    *,
    count: int = 1000,
    block_ms: int | None = None,
) -> dict[tuple[str, int], list[tuple[int, Decoded]]]:
    """Tail several partitions with one ``XREAD``: ``{(topic, partition): next offset}``.

    Returns the records at and after each position, per partition (partitions with
    nothing new are left out). With ``block_ms`` waits up to that long for any record.

    On a Redis Cluster client, one ``XREAD`` per partition (:func:`xread_streams`).
    """
    if not positions:
        return {}
    by_key = {stream_key(t, p): (t, p) for t, p in positions}
    reply = await xread_streams(
        redis,
        {stream_key(t, p): f"0-{offset}" for (t, p), offset in positions.items()},
        count=count,
        block_ms=block_ms,
    )
    out = {}
    for raw_key, entries in reply:
        name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        out[by_key[name]] = [(offset_of(eid), decode_entry(fields)) for eid, fields in entries]
    return out


#: How often a read on a Redis Cluster looks again while nothing is new (see below).
CLUSTER_POLL_S = 0.005


async def xread_streams(
    redis: aioredis.Redis | RedisCluster,
    streams: Mapping[Any, Any],
    *,
    count: int | None,
    block_ms: int | None,
) -> list[tuple[Any, list[Any]]]:
    """``XREAD`` of several streams (``{key: id to read after}``): ``[(key, entries)]``
    for the streams with entries, as RESP2 answers.

    One command on one server. A Redis Cluster refuses keys of several slots in one
    command (``CROSSSLOT``), and each partition has a slot of its own (its hash tag), so
    there every stream gets its own ``XREAD``, sent in one pipeline: redis-py's cluster
    pipeline sends the commands of one node together and the nodes' in parallel (one
    round trip per node), and follows ``MOVED``/``ASK`` after a failover or a
    resharding. Those reads do not block (a blocking ``XREAD`` per partition would hold
    a connection each): while nothing is new the pipeline is sent again every
    :data:`CLUSTER_POLL_S` until ``block_ms`` has passed, which adds up to that much
    latency, and one round trip per node per poll while idle.
    """
    if not is_cluster(redis):
        reply: Any = await redis.xread(dict(streams), count=count, block=block_ms)
        return list(reply.items()) if isinstance(reply, dict) else list(reply or ())
    deadline = time.monotonic() + (block_ms or 0) / 1000.0
    while True:
        async with redis.pipeline(transaction=False) as pipe:
            for key, after in streams.items():
                pipe.xread({key: after}, count=count)
            replies: list[Any] = await pipe.execute()
        out = [(key, reply[0][1]) for key, reply in zip(streams, replies, strict=True) if reply]
        if out or block_ms is None or time.monotonic() >= deadline:
            return out
        await asyncio.sleep(CLUSTER_POLL_S)


# --- topics and retention -------------------------------------------------------------


async def declare_topic(redis: aioredis.Redis, topic: str, partitions: int) -> int:
    """Record ``topic`` with ``partitions``; idempotent. Raises on a different count.

    A topic declared for the first time (or again after it was deleted) gets a new
    incarnation id, which invalidates compaction state left from an earlier life.
    """
    if await redis.hsetnx(TOPICS_KEY, topic, partitions):
        await redis.hset(INCARNATIONS_KEY, topic, new_incarnation())
    stored = int(await redis.hget(TOPICS_KEY, topic) or partitions)
    if stored != partitions:
        raise TopicError(
            f"topic {topic!r} exists with {stored} partitions, but {partitions} were "
            f"requested; to change it, stop its apps and delete the topic with "
            f"pipeline.transport.streams.delete_topic(redis, {topic!r}) (its data is lost)"
        )
    return stored


async def partition_count(redis: aioredis.Redis, topic: str) -> int | None:
    """The stored partition count of ``topic``, or None if it was never declared."""
    stored = await redis.hget(TOPICS_KEY, topic)
    return int(stored) if stored is not None else None


@dataclass(frozen=True)
class Retention:
    """How much of a topic to keep: about ``maxlen`` entries and/or ``max_age_ms``."""

    maxlen: int | None = None
    max_age_ms: int | None = None


async def set_retention(redis: aioredis.Redis, topic: str, retention: Retention) -> None:
    """Store the retention of ``topic`` (read by producers and :func:`trim_by_age`)."""
    await redis.hset(
        RETENTION_KEY,
        topic,
        json.dumps({"maxlen": retention.maxlen, "max_age_ms": retention.max_age_ms}),
    )
    (await _server(redis)).retentions.pop(topic, None)


async def cached_retention(redis: aioredis.Redis, topic: str) -> Retention | None:
    """``topic``'s retention as read at most :data:`RETENTION_REFRESH_S` ago (per server)."""
    info = await _server(redis)
    now = time.monotonic()
    cached = info.retentions.get(topic)
    if cached is None or now - cached[0] > RETENTION_REFRESH_S:
        cached = info.retentions[topic] = (now, await get_retention(redis, topic))
    return cached[1]


async def get_retention(redis: aioredis.Redis, topic: str) -> Retention | None:
    raw = await redis.hget(RETENTION_KEY, topic)
    if raw is None:
        return None
    data = json.loads(raw)
    return Retention(maxlen=data.get("maxlen"), max_age_ms=data.get("max_age_ms"))


async def retentions(redis: aioredis.Redis) -> dict[str, Retention]:
    """Every stored topic retention."""
    raw: Any = await redis.hgetall(RETENTION_KEY)
    out = {}
    for topic, value in raw.items():
        data = json.loads(value)
        name = topic.decode() if isinstance(topic, bytes) else str(topic)
        out[name] = Retention(maxlen=data.get("maxlen"), max_age_ms=data.get("max_age_ms"))
    return out


async def apply_age_retention(
    redis: aioredis.Redis, *, now_ms: int | None = None, group_expiry_s: float = GROUP_EXPIRY_S
) -> int:
    """Trim every partition of every topic with a ``max_age_ms``; returns entries removed.

    Never past the lowest offset committed for that partition by a live consumer group
    (see :func:`pipeline.transport.topics.register_group`): a group that lags keeps
    what it has not read, as Kafka would not (there the group would lose it).
    """
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    aged = {t: r.max_age_ms for t, r in (await retentions(redis)).items() if r.max_age_ms}
    if not aged:
        return 0
    groups, expired = await live_groups(redis, now_ms=now, expiry_s=group_expiry_s)
    if expired:
        log.warning(
            "retention: ignoring the commits of consumer groups not seen for %.0f s: %s",
            group_expiry_s, ", ".join(sorted(expired)),
        )  # fmt: skip
    commits = await group_commits(redis, groups)
    removed = 0
    for topic, max_age_ms in aged.items():
        for partition in range(await partition_count(redis, topic) or 0):
            field_name = tp_field(topic, partition)
            held = {g: c[field_name] for g, c in commits.items() if field_name in c}
            bound = min(held.values()) if held else None
            removed += await trim_by_age(
                redis, topic, partition, max_age_ms, now_ms=now, max_offset=bound
            )
            if bound is not None and await _older_than(
                redis, topic, partition, bound, now - max_age_ms
            ):
                laggards = sorted(g for g, offset in held.items() if offset == bound)
                log.warning(
                    "retention: %s[%d] keeps entries older than %d ms from offset %d on: "
                    "group(s) %s committed no further (memory grows until they catch up)",
                    topic, partition, max_age_ms, bound, ", ".join(laggards),
                )  # fmt: skip
    return removed


async def _older_than(
    redis: aioredis.Redis, topic: str, partition: int, offset: int, cutoff_ms: int
) -> bool:
    """Whether the entry at ``offset`` (or the next one held) is older than ``cutoff_ms``."""
    found: Any = await redis.xrange(stream_key(topic, partition), stream_id(offset), "+", count=1)
    return bool(found) and decode_entry(found[0][1])[3] < cutoff_ms


async def trim_by_age(
    redis: aioredis.Redis,
    topic: str,
    partition: int,
    max_age_ms: int,
    *,
    now_ms: int | None = None,
    max_offset: int | None = None,
) -> int:
    """Delete entries older than ``max_age_ms`` (by their timestamp); returns how many.

    Stream ids carry offsets, not times, so this binary-searches the first young
    entry (timestamps are assumed to grow with offsets) and trims with ``MINID``.
    ``max_offset`` keeps that offset and everything after it whatever their age (the
    lowest committed offset of the groups reading the partition).
    """
    key = stream_key(topic, partition)
    cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - max_age_ms
    lo = await earliest(redis, topic, partition)
    hi = await highwater(redis, topic, partition)
    if max_offset is not None:
        hi = min(hi, max(lo, max_offset))
    while lo < hi:
        mid = (lo + hi) // 2
        found: Any = await redis.xrange(key, stream_id(mid), "+", count=1)
        if not found:
            hi = mid
            continue
        if decode_entry(found[0][1])[3] < cutoff:
            lo = offset_of(found[0][0]) + 1
        else:
            hi = mid
    lo = min(lo, hi)
    return int(await redis.xtrim(key, minid=stream_id(lo), approximate=False))
