"""Group membership, leadership, generations and fenced commits, kept in Redis.

What Kafka's group coordinator does for a consumer group, built on a few Redis keys
(all under the hash tag ``{group:<id>}`` so every script touches one Cluster slot):

========================  =======================================================
``…:members``             ZSET member id -> lease expiry (server time, ms)
``…:leader``              STRING leader's member id, expires after the session timeout
``…:state``               HASH ``generation`` (counter), ``phase`` (joining | stable)
``…:joined``              HASH member id -> generation it joined (after revoking)
``…:meta``                HASH member id -> member metadata (Faust assignor's)
``…:assignment``          HASH member id -> assignment; ``__generation__`` -> G
``…:offsets``             HASH ``topic:partition`` -> committed offset (next to read)
``…:rebalance``           STRING set by a member that wants a new generation
========================  =======================================================

Protocol (an eager rebalance, like Kafka's classic one):

1. Every member heartbeats (one script: refresh its lease, take or keep the leader
   key, read the state). A member that misses the session timeout drops out.
2. The leader starts generation G+1 (phase ``joining``) when the live members differ
   from those of the published assignment, or a member asked for it.
3. A member that sees a newer generation revokes everything it holds (Faust commits
   while doing so, still fenced by the old generation), then joins G+1 with its
   metadata.
4. When every live member has joined (or the session timeout has passed, after which
   the laggards are evicted), the leader runs the assign callback (Faust's own
   ``PartitionAssignor``) and publishes the assignment of G+1 (phase ``stable``).
5. Members read their part and start. From then on a commit carrying generation G is
   refused: commits are checked in a script against the published generation and the
   member's lease, so a stale owner (frozen, partitioned away) cannot commit.

So no partition is handed out before its previous owner revoked it or lost its lease,
and a member stops fetching locally as soon as its own lease may have lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis

from pipeline.transport.errors import TRANSIENT_ERRORS, CommitRefused
from pipeline.transport.keys import group_key
from pipeline.transport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

GENERATION_FIELD = "__generation__"

_HEARTBEAT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
local leader = redis.call('GET', KEYS[2])
if not leader then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
  leader = ARGV[1]
elseif leader == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
local gen = redis.call('HGET', KEYS[3], 'generation') or '0'
local phase = redis.call('HGET', KEYS[3], 'phase') or ''
local agen = redis.call('HGET', KEYS[4], '__generation__') or '0'
return {leader, gen, phase, agen, tostring(now)}
"""

# KEYS: leader, state, rebalance; ARGV: member, expected generation
_START_GENERATION_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local gen = tonumber(redis.call('HGET', KEYS[2], 'generation') or '0')
if gen ~= tonumber(ARGV[2]) then return -2 end
redis.call('HSET', KEYS[2], 'generation', gen + 1, 'phase', 'joining')
redis.call('DEL', KEYS[3])
return gen + 1
"""

# KEYS: leader, state, assignment; ARGV: member, generation, then member/assignment pairs
_PUBLISH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[2] then return -2 end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], '__generation__', ARGV[2])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[2], 'phase', 'stable')
return 1
"""

# KEYS: members, assignment, offsets; ARGV: member, generation, then field/offset pairs
_COMMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) < now then return 0 end
if redis.call('HGET', KEYS[2], '__generation__') ~= ARGV[2] then return -1 end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
return 1
"""


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GroupCoordinator:
    """One member of a group: heartbeats, joins generations, leads when it must.

    The owner supplies four callbacks: ``metadata()`` (this member's subscription
    metadata), ``assign(metadata by member)`` (run on the leader only), ``revoke()``
    and ``assign_local(generation, assignment)``.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        group: str,
        member_id: str,
        *,
        session_timeout_s: float,
        metadata: Callable[[], Awaitable[bytes]],
        assign: Callable[[Mapping[str, bytes]], Awaitable[Mapping[str, bytes]]],
        revoke: Callable[[], Awaitable[None]],
        assign_local: Callable[[int, bytes], Awaitable[None]],
    ) -> None:
        self.redis = redis
        self.group = group
        self.member_id = member_id
        self.session_timeout_s = session_timeout_s
        self.heartbeat_interval_s = max(0.1, session_timeout_s / 6)
        self._metadata = metadata
        self._assign = assign
        self._revoke = revoke
        self._assign_local = assign_local
        self.keys = {
            name: group_key(group, name)
            for name in (
                "members",
                "leader",
                "state",
                "joined",
                "meta",
                "assignment",
                "offsets",
                "rebalance",
            )
        }
        self._heartbeat_lua = redis.register_script(_HEARTBEAT_LUA)
        self._start_lua = redis.register_script(_START_GENERATION_LUA)
        self._publish_lua = redis.register_script(_PUBLISH_LUA)
        self._commit_lua = redis.register_script(_COMMIT_LUA)
        #: Generation whose assignment this member runs (0: none).
        self.generation = 0
        self._joined_generation = 0
        self._holds_assignment = False
        self.is_leader = False
        self._lease_deadline = 0.0
        #: The generation during which our lease lapsed: it may not write or commit.
        self._lapsed_generation = 0
        #: Called with that generation when a heartbeat finds our lease had lapsed.
        self.on_lease_lapsed: Callable[[int], None] | None = None
        self._state: tuple[str, int, str, int, int] = ("", 0, "", 0, 0)
        self._changed = asyncio.Event()
        self._joining_since: tuple[int, float] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.assigned = asyncio.Event()

    # --- lifetime ---------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="group-heartbeat"),
            asyncio.create_task(self._state_loop(), name="group-state"),
        ]

    async def stop(self) -> None:
        """Leave the group so the others rebalance at once instead of after the timeout."""
        self._stopping = True
        await cancel_and_wait(*self._tasks)
        with contextlib.suppress(*TRANSIENT_ERRORS):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self.keys["members"], self.member_id)
                pipe.hdel(self.keys["joined"], self.member_id)
                pipe.set(self.keys["rebalance"], self.member_id)
                await pipe.execute()
            if await self.redis.get(self.keys["leader"]) == self.member_id.encode():
                await self.redis.delete(self.keys["leader"])

    def request_rebalance(self) -> None:
        """Ask the leader for a new generation (our subscription changed)."""
        task = asyncio.create_task(self._request_rebalance())
        self._tasks.append(task)

    async def _request_rebalance(self) -> None:
        for attempt in range(100):
            try:
                await self.redis.set(self.keys["rebalance"], self.member_id)
                self._changed.set()
                return
            except TRANSIENT_ERRORS:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))

    # --- queries ----------------------------------------------------------------------

    def lease_valid(self) -> bool:
        """True while our lease surely has not lapsed on the server."""
        return time.monotonic() < self._lease_deadline

    def may_fetch(self) -> bool:
        """True while we hold a current assignment under a live lease."""
        return (
            self.lease_valid()
            and self.generation > 0
            and self._state[1] <= self.generation
            and self.generation != self._lapsed_generation
        )

    def write_permit(self, generation: int, *, changelog: bool) -> bool | None:
        """May a write made in ``generation`` go to Redis? None: not yet known.

        False once our lease lapsed during that generation (someone else may own its
        partitions now), and for a changelog also once the generation is over (its
        state is stale); None while our lease may have lapsed, until the next
        heartbeat tells (False if we stopped heartbeating).
        """
        if generation == self._lapsed_generation or (changelog and generation != self.generation):
            return False
        if self.lease_valid():
            return True
        # Stopped: no heartbeat will tell any more (and a stopping worker must not hang).
        return False if self._stopping else None

    def _check_lapse(self, sent: float) -> None:
        """After a heartbeat sent at ``sent``: did our lease lapse since the last one?"""
        if self._lease_deadline == 0.0 or sent < self._lease_deadline:
            return
        lapsed_s = sent - self._lease_deadline + self.session_timeout_s * 0.8
        self.lapsed(self.generation, f"no heartbeat for {lapsed_s:.1f} s")

    def lapsed(self, generation: int, reason: str) -> None:
        """Our hold on ``generation`` may be gone: no more writes or commits in it.

        Asks for a new generation, in which Faust rebuilds our state from the changelogs.
        """
        if not generation or generation != self.generation:
            return
        if generation == self._lapsed_generation:
            return
        self._lapsed_generation = generation
        log.warning(
            "%s: lease lapsed during generation %d (%s): its writes and commits are "
            "refused, its buffered events dropped; rejoining",
            self.member_id,
            generation,
            reason,
        )
        if self.on_lease_lapsed is not None:
            self.on_lease_lapsed(generation)
        self.request_rebalance()

    async def commit(self, offsets: Mapping[str, int]) -> None:
        """Store committed offsets, fenced by our generation and lease."""
        if not self.lease_valid() or self.generation == self._lapsed_generation:
            raise CommitRefused(f"{self.member_id}: lease lapsed or a rebalance is under way")
        args: list[str | int] = [self.member_id, self.generation]
        for field, offset in offsets.items():
            args += [field, offset]
        keys = [self.keys["members"], self.keys["assignment"], self.keys["offsets"]]
        result = int(await self._commit_lua(keys=keys, args=args))
        if result == 0:
            raise CommitRefused(f"{self.member_id}: lease expired on the server")
        if result < 0:
            raise CommitRefused(
                f"{self.member_id}: generation {self.generation} is no longer current"
            )

    async def committed(self, fields: list[str]) -> dict[str, int | None]:
        if not fields:
            return {}
        values = await self.redis.hmget(self.keys["offsets"], fields)
        return {f: int(v) if v is not None else None for f, v in zip(fields, values, strict=True)}

    # --- heartbeat --------------------------------------------------------------------

    async def _heartbeat_once(self) -> None:
        ttl_ms = int(self.session_timeout_s * 1000)
        sent = time.monotonic()
        keys = [
            self.keys["members"],
            self.keys["leader"],
            self.keys["state"],
            self.keys["assignment"],
        ]
        reply = await self._heartbeat_lua(keys=keys, args=[self.member_id, ttl_ms])
        leader, gen, phase, agen, now = (_text(x) for x in reply)
        self._check_lapse(sent)
        # Expire locally a little before the server does.
        self._lease_deadline = sent + self.session_timeout_s * 0.8
        state = (leader, int(gen), phase, int(agen), int(now))
        was_leader = self.is_leader
        self.is_leader = leader == self.member_id
        if was_leader != self.is_leader:
            log.info("%s %s group leader", self.member_id, "is" if self.is_leader else "is not")
        if state[1:4] != self._state[1:4] or self.is_leader:
            self._changed.set()
        self._state = state

    async def _heartbeat_loop(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._heartbeat_once()
                if failures:
                    log.warning("group %s: Redis reachable again", self.group)
                failures = 0
                delay = self.heartbeat_interval_s
            except TRANSIENT_ERRORS as exc:
                failures += 1
                delay = min(self.heartbeat_interval_s, 0.05 * 2**failures)
                log.warning("group %s: heartbeat failed (%r); retrying", self.group, exc)
            except Exception:
                # Not a connection problem (e.g. Redis out of memory): keep trying, loudly;
                # a dead heartbeat task would silently cost us our partitions.
                failures += 1
                delay = self.heartbeat_interval_s
                log.exception("group %s: heartbeat failed; retrying", self.group)
            await asyncio.sleep(delay)

    # --- state machine ----------------------------------------------------------------

    async def _state_loop(self) -> None:
        failures = 0
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.heartbeat_interval_s)
            self._changed.clear()
            try:
                busy = await self._step()
                failures = 0
            except TRANSIENT_ERRORS as exc:
                failures += 1
                log.warning("group %s: %r; retrying", self.group, exc)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                # e.g. the assignor refused the subscriptions: log, back off, try again.
                failures += 1
                log.exception("group %s: rebalance step failed; retrying", self.group)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                self._changed.set()
                continue
            if busy:
                await asyncio.sleep(0.05)
                self._changed.set()

    async def _step(self) -> bool:
        """One pass of the member and leader duties; True while a rebalance is under way."""
        if not self._state[0]:
            return False  # no heartbeat yet
        busy = False
        if self.is_leader:
            busy = await self._lead()
        busy = await self._follow() or busy
        return busy

    async def _follow(self) -> bool:
        _, gen, phase, agen, _ = self._state
        if gen > self._joined_generation:
            if self._holds_assignment:
                await self._revoke()
                self._holds_assignment = False
            metadata = await self._metadata()
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys["meta"], self.member_id, metadata)
                pipe.hset(self.keys["joined"], self.member_id, gen)
                await pipe.execute()
            self._joined_generation = gen
            log.info("%s joined generation %d", self.member_id, gen)
            return True
        if phase == "stable" and agen == gen == self._joined_generation and self.generation != gen:
            raw = await self.redis.hget(self.keys["assignment"], self.member_id)
            if raw is None:
                # Published without us (we joined late): ask for another round.
                await self.redis.set(self.keys["rebalance"], self.member_id)
                return True
            self.generation = gen
            await self._assign_local(gen, _raw(raw))
            self._holds_assignment = True
            self.assigned.set()
            log.info("%s runs generation %d", self.member_id, gen)
            return False
        return phase != "stable"

    async def _lead(self) -> bool:
        _, gen, phase, agen, now_ms = self._state
        members = self.keys["members"]
        expired = [_text(m) for m in await self.redis.zrangebyscore(members, "-inf", now_ms)]
        if expired:
            log.warning("group %s: members %s missed their lease", self.group, expired)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(members, *expired)
                pipe.hdel(self.keys["joined"], *expired)
                await pipe.execute()
        live = {_text(m) for m in await self.redis.zrangebyscore(members, now_ms, "+inf")}
        if phase != "joining":
            assigned = {_text(m) for m in await self.redis.hkeys(self.keys["assignment"])} - {
                GENERATION_FIELD
            }
            requested = await self.redis.get(self.keys["rebalance"])
            if gen == 0 or live != assigned or requested is not None:
                started = await self._start_lua(
                    keys=[self.keys["leader"], self.keys["state"], self.keys["rebalance"]],
                    args=[self.member_id, gen],
                )
                if int(started) > 0:
                    log.info(
                        "group %s: generation %d (members %s)", self.group, started, sorted(live)
                    )
                    self._state = (self._state[0], int(started), "joining", agen, now_ms)
                    return True
            return False
        # Joining: wait for every live member, or for the session timeout.
        if self._joining_since is None or self._joining_since[0] != gen:
            self._joining_since = (gen, time.monotonic())
        joined_raw = await self.redis.hgetall(self.keys["joined"])
        joined = {_text(m) for m, g in joined_raw.items() if int(g) == gen}
        waiting = live - joined
        if waiting and time.monotonic() - self._joining_since[1] < self.session_timeout_s:
            return True
        if waiting:
            log.warning("group %s: evicting %s (did not join in time)", self.group, waiting)
            await self.redis.zrem(members, *waiting)
        participants = sorted(joined & live)
        if not participants:
            return True
        metas = await self.redis.hmget(self.keys["meta"], participants)
        by_member = {m: _raw(v) for m, v in zip(participants, metas, strict=True) if v}
        assignments = await self._assign(by_member)
        args: list[str | int | bytes] = [self.member_id, gen]
        for member, assignment in assignments.items():
            args += [member, assignment]
        keys = [self.keys["leader"], self.keys["state"], self.keys["assignment"]]
        published = int(await self._publish_lua(keys=keys, args=args))
        if published > 0:
            log.info("group %s: published generation %d", self.group, gen)
            self._state = (self._state[0], gen, "stable", gen, now_ms)
            return False
        return True
