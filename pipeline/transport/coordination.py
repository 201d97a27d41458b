"""Group membership, leadership, generations and fenced commits, kept in Redis.

What Kafka's group coordinator does for a consumer group, built on a few Redis keys
(all under the hash tag ``{group:<id>}`` so every script touches one Cluster slot):

========================  =======================================================
``…:members``             ZSET member id -> lease expiry (server time, ms)
``…:incarnations``        HASH member id -> token of its current incarnation
``…:leader``              STRING leader's member id, expires after the session timeout
``…:state``               HASH ``epoch`` (random, per group state), ``generation``,
                          ``phase`` (joining | stable), ``incarnations`` (counter),
                          ``settle_until`` (server ms)
``…:joined``              HASH member id -> generation it joined (after revoking)
``…:meta``                HASH member id -> member metadata (Faust assignor's)
``…:assignment``          HASH member id -> assignment; ``__generation__`` -> G
``…:offsets``             HASH ``topic:partition`` -> committed offset (next to read)
``…:rebalance``           STRING set by a member that wants a new generation
========================  =======================================================

Identity: every start of a member (and every rejoin after it was evicted) registers a
new *incarnation*, a token ``<counter>:<random>``. Every write of a member (heartbeat,
join, commit, the leader's scripts) checks its token and the group's *epoch*: a process
replaced by a newer incarnation of its member id is fenced (it logs an error and stops
processing), and a member that finds the epoch gone or changed, the generation gone
back, or an older incarnation of itself (Redis lost its state, or went back to an older
snapshot) stops fetching, revokes, and registers again.

Protocol (an eager rebalance, like Kafka's classic one):

1. Every member heartbeats (one script: check epoch and incarnation, refresh its
   lease, take or keep the leader key, read the state). A member whose lease lapsed
   on the server is evicted, by the leader or at its own next heartbeat.
2. The leader starts generation G+1 (phase ``joining``) when the live members differ
   from those of the published assignment, or a member asked for it (a new
   incarnation always does, unless a generation is being joined).
3. A member that sees a newer generation revokes everything it holds (Faust commits
   while doing so, still fenced by the old generation), then joins G+1 with its
   metadata. A new incarnation never runs a generation published before it
   registered: that assignment was computed without it, or for its predecessor.
4. When every live member has joined (or the session timeout has passed, after which
   the laggards are evicted), and the state has settled (see :mod:`.group_scripts`), the
   leader runs the assign callback (Faust's own ``PartitionAssignor``) and publishes
   the assignment of G+1 (phase ``stable``).
5. Members read their part and start. From then on a commit carrying generation G is
   refused: commits are checked in a script against the epoch, the incarnation, the
   published generation and the member's lease, so a stale owner (frozen, partitioned
   away, replaced, or of a lost group state) cannot commit.

So no partition is handed out before its previous owner revoked it or lost its lease,
and a member stops fetching locally as soon as its own lease may have lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import redis.asyncio as aioredis

from pipeline.transport import group_scripts as scripts
from pipeline.transport.errors import TRANSIENT_ERRORS, CommitRefused
from pipeline.transport.keys import group_key
from pipeline.transport.tasks import cancel_and_wait

log = logging.getLogger(__name__)

GENERATION_FIELD = "__generation__"

#: What a heartbeat can find, besides ``ok``: see :meth:`GroupCoordinator._heartbeat_once`.
_EPOCH, _EVICTED, _FENCED = "epoch", "evicted", "fenced"


def _token_seq(token: str) -> int:
    head, _, _ = token.partition(":")
    return int(head) if head.isdigit() else 0


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GroupCoordinator:
    """One incarnation of a member: heartbeats, joins generations, leads when it must.

    The owner supplies four callbacks: ``metadata()`` (this member's subscription
    metadata), ``assign(metadata by member)`` (run on the leader only), ``revoke()``
    and ``assign_local(generation, assignment)``; and optionally ``fenced()``, called
    once this process was replaced by a newer incarnation of its member id.
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
        fenced: Callable[[], Awaitable[None]] | None = None,
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
        self._on_fenced = fenced
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
                "incarnations",
            )
        }
        self._register_lua = redis.register_script(scripts.REGISTER_LUA)
        self._heartbeat_lua = redis.register_script(scripts.HEARTBEAT_LUA)
        self._join_lua = redis.register_script(scripts.JOIN_LUA)
        self._start_lua = redis.register_script(scripts.START_GENERATION_LUA)
        self._publish_lua = redis.register_script(scripts.PUBLISH_LUA)
        self._commit_lua = redis.register_script(scripts.COMMIT_LUA)
        self._evict_lua = redis.register_script(scripts.EVICT_LUA)
        self._leave_lua = redis.register_script(scripts.LEAVE_LUA)
        #: Generation whose assignment this member runs (0: none).
        self.generation = 0
        #: This incarnation's token (None: not registered yet, or reset) and group epoch.
        self.token: str | None = None
        self.epoch = ""
        #: True once a newer incarnation of our member id took over: we stay out.
        self.fenced = False
        self._state_lost = False
        self._min_generation = 0
        self._joined_generation = 0
        self._holds_assignment = False
        self.is_leader = False
        self._lease_deadline = 0.0
        #: Server time (ms) until which our lease surely holds, from the last heartbeat
        #: (0: none). Writes carry it, and Redis refuses them after it (see
        #: :mod:`pipeline.transport.append_script`): a check of our own clock
        #: before a write cannot cover a freeze between that check and the send.
        self.lease_end_ms = 0
        self._settle_deadline = 0.0
        # leader, generation, phase, generation of the assignment, server time (ms)
        #: The fence token (see :attr:`fence_token`) of the generation during which our
        #: lease lapsed: it may not write or commit.
        self._lapsed_token = ""
        #: Called with that token when a heartbeat finds our lease had lapsed.
        self.on_lease_lapsed: Callable[[str], None] | None = None
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
        if self.token is None or self.fenced:
            return  # not a member (any more): nothing of ours to remove
        keys = [self.keys[k] for k in ("state", "incarnations", "members", "joined")]
        keys += [self.keys["rebalance"], self.keys["leader"]]
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self._leave_lua(keys=keys, args=[self.member_id, self.token, self.epoch])

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

    @property
    def fence_token(self) -> str:
        """The generation we run, qualified by the group epoch ('' when none).

        Writes carry it (see :meth:`write_permit`; changelog partitions hold their
        owner's in Redis). The epoch makes it unique: generation numbers start again
        when Redis lost the group state, and a stale writer must not match a new owner.
        """
        if self.generation:
            return f"{self.epoch}:{self.generation}"
        # Between a lost generation (a reset) and the next assignment, what the agents
        # still send belongs to the lost one and must be refused like it.
        return self._lapsed_token

    def may_fetch(self) -> bool:
        """True while we hold a current assignment under a live lease."""
        return (
            self.lease_valid()
            and self.generation > 0
            and self._state[1] <= self.generation
            and self.fence_token != self._lapsed_token
        )

    def write_permit(self, token: str, *, changelog: bool) -> bool | None:
        """May a write made under fence ``token`` go to Redis? None: not yet known.

        False once our lease lapsed during that generation (someone else may own its
        partitions now), and for a changelog also once the generation is over (its
        state is stale); None while our lease may have lapsed, until the next
        heartbeat tells (False if we stopped heartbeating).
        """
        if token == self._lapsed_token or (changelog and token != self.fence_token):
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
        self.lapsed(self.fence_token, f"no heartbeat for {lapsed_s:.1f} s")

    def lapsed(self, token: str, reason: str, *, rejoin: bool = True) -> None:
        """Our hold on the generation of ``token`` may be gone: no more writes or commits
        in it, and Faust's buffered events are dropped (the hook).

        Asks for a new generation, in which Faust rebuilds our state from the changelogs.
        """
        if not token or token != self.fence_token or token == self._lapsed_token:
            return
        self._lapsed_token = token
        log.warning(
            "%s: lease lapsed during generation %s (%s): its writes and commits are "
            "refused, its buffered events dropped; rejoining",
            self.member_id,
            token,
            reason,
        )
        if self.on_lease_lapsed is not None:
            self.on_lease_lapsed(token)
        if rejoin:
            self.request_rebalance()

    async def commit(self, offsets: Mapping[str, int]) -> None:
        """Store committed offsets, fenced by epoch, incarnation, generation and lease."""
        token = self.token
        if token is None or not self.lease_valid() or self.fence_token == self._lapsed_token:
            raise CommitRefused(f"{self.member_id}: lease lapsed or a rebalance is under way")
        args: list[str | int] = [self.member_id, token, self.epoch, self.generation]
        for field, offset in offsets.items():
            args += [field, offset]
        keys = [self.keys[k] for k in ("state", "incarnations", "members", "assignment")]
        keys.append(self.keys["offsets"])
        result = int(await self._commit_lua(keys=keys, args=args))
        if result == 0:
            raise CommitRefused(f"{self.member_id}: lease expired on the server")
        if result == -1:
            raise CommitRefused(
                f"{self.member_id}: generation {self.generation} is no longer current"
            )
        if result == -3:
            raise CommitRefused(f"{self.member_id}: group epoch {self.epoch} is gone")
        if result == -4:
            raise CommitRefused(f"{self.member_id}: incarnation {token} was replaced")

    async def committed(self, fields: list[str]) -> dict[str, int | None]:
        if not fields:
            return {}
        values = await self.redis.hmget(self.keys["offsets"], fields)
        return {f: int(v) if v is not None else None for f, v in zip(fields, values, strict=True)}

    # --- heartbeat --------------------------------------------------------------------

    async def _register(self) -> None:
        """Start a new incarnation of our member id (a new token, a new generation)."""
        keys = [self.keys[k] for k in ("state", "members", "incarnations", "joined")]
        keys.append(self.keys["rebalance"])
        ttl_ms = int(self.session_timeout_s * 1000)
        lost = "1" if self._state_lost else "0"
        args: list[str | int] = [self.member_id, secrets.token_hex(8), secrets.token_hex(8)]
        args += [ttl_ms, lost, int(2 * self.heartbeat_interval_s * 1000)]
        sent = time.monotonic()
        reply = await self._register_lua(keys=keys, args=args)
        epoch, token, gen, phase = (_text(x) for x in reply)
        self._lease_deadline = sent + self.session_timeout_s * 0.8
        self.epoch, self.token = epoch, token
        self._state_lost = False
        # A published generation holds an assignment computed without us (or for our
        # dead predecessor): we only join one still being joined, or a later one.
        self._min_generation = int(gen) if phase == "joining" else int(gen) + 1
        log.info(
            "%s registered as incarnation %s of group %s (epoch %s, generation %s)",
            self.member_id, token, self.group, epoch, gen,
        )  # fmt: skip

    def _reset(self, level: int, reason: str, *, state_lost: bool) -> None:
        """Stop fetching now, forget our generations; the state loop revokes, we rejoin."""
        log.log(
            level,
            "group %s: %s: %s stops fetching, revokes its partitions (generation %d) and "
            "rejoins as a new incarnation",
            self.group, reason, self.member_id, self.generation,
        )  # fmt: skip
        # What we hold may be someone else's by now: the same fence as a lapsed lease.
        self.lapsed(self.fence_token, reason, rejoin=False)
        self._lease_deadline = 0.0
        self.lease_end_ms = 0
        self.generation = 0
        self._joined_generation = 0
        self._min_generation = 0
        self.token = None
        self.is_leader = False
        self._joining_since = None
        self._state_lost = self._state_lost or state_lost
        self._state = ("", 0, "", 0, 0)
        self._changed.set()

    async def _heartbeat_once(self) -> bool:
        """One heartbeat; True if it must be repeated at once (we just reset)."""
        if self.token is None:
            await self._register()
        token = self.token
        assert token is not None
        ttl_ms = int(self.session_timeout_s * 1000)
        sent = time.monotonic()
        keys = [self.keys[k] for k in ("members", "leader", "state", "assignment")]
        keys += [self.keys["incarnations"], self.keys["joined"]]
        reply = [_text(x) for x in await self._heartbeat_lua(
            keys=keys, args=[self.member_id, ttl_ms, token, self.epoch]
        )]  # fmt: skip
        status = reply[0]
        if status == _EPOCH:
            self._reset(
                logging.ERROR,
                f"group state lost or replaced in Redis (epoch {self.epoch!r} is now "
                f"{reply[1]!r}); committed offsets may be gone too",
                state_lost=True,
            )
            return True
        if status == _EVICTED:
            self._reset(logging.WARNING, "evicted (lease lapsed)", state_lost=False)
            return True
        if status == _FENCED:
            assert self.token is not None
            if _token_seq(reply[1]) > _token_seq(self.token):
                await self._fence(reply[1])
                return False
            # An older token than ours: Redis went back to an older snapshot.
            self._reset(
                logging.ERROR,
                f"group state went back in Redis (incarnation {reply[1]} < {self.token})",
                state_lost=True,
            )
            return True
        leader, gen, phase, agen, now, settle = reply[1:7]
        self._check_lapse(sent)
        state = (leader, int(gen), phase, int(agen), int(now))
        if state[1] < max(self.generation, self._joined_generation):
            self._reset(
                logging.ERROR,
                f"generation went back in Redis ({self._joined_generation} -> {gen})",
                state_lost=True,
            )
            return True
        # Expire locally a little before the server does; in server time likewise.
        self._lease_deadline = sent + self.session_timeout_s * 0.8
        self.lease_end_ms = int(now) + int(self.session_timeout_s * 800)
        self._settle_deadline = sent + max(0, int(settle) - int(now)) / 1000
        was_leader = self.is_leader
        self.is_leader = leader == self.member_id
        if was_leader != self.is_leader:
            log.info("%s %s group leader", self.member_id, "is" if self.is_leader else "is not")
        if state[1:4] != self._state[1:4] or self.is_leader:
            self._changed.set()
        self._state = state
        return False

    async def _fence(self, newer: str) -> None:
        log.error(
            "group %s: %s was taken over by a newer incarnation (%s, ours %s): another "
            "process runs with this member id; this one stops processing",
            self.group, self.member_id, newer, self.token,
        )  # fmt: skip
        self.fenced = True
        self._lease_deadline = 0.0
        self.lease_end_ms = 0
        self.generation = 0
        self.is_leader = False
        self._changed.set()
        if self._on_fenced is not None:
            await self._on_fenced()

    async def _heartbeat_loop(self) -> None:
        failures = 0
        while not self._stopping and not self.fenced:
            try:
                again = await self._heartbeat_once()
                if failures:
                    log.warning("group %s: Redis reachable again", self.group)
                failures = 0
                delay = 0.0 if again else self.heartbeat_interval_s
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
            if self.fenced and not self._holds_assignment:
                return
            if busy:
                await asyncio.sleep(0.05)
                self._changed.set()

    async def _step(self) -> bool:
        """One pass of the member and leader duties; True while a rebalance is under way."""
        if self._holds_assignment and self.generation == 0:
            # Reset, fenced, or an assignment that failed to apply: give it all back now
            # (Faust waits for in-flight events; their commits are refused).
            self._holds_assignment = False
            await self._revoke()
        if self.fenced or not self._state[0] or self.token is None:
            return False  # no heartbeat yet in this incarnation
        # A reset may come while we wait on Redis: every write below carries this token
        # and is refused once it is stale.
        token = self.token
        busy = False
        if self.is_leader:
            busy = await self._lead(token)
        busy = await self._follow(token) or busy
        return busy

    async def _follow(self, token: str) -> bool:
        _, gen, phase, agen, _ = self._state
        if gen >= self._min_generation and gen > self._joined_generation:
            if self._holds_assignment:
                self._holds_assignment = False
                await self._revoke()
            metadata = await self._metadata()
            if token != self.token:
                return True  # reset meanwhile
            keys = [self.keys[k] for k in ("state", "incarnations", "joined", "meta")]
            joined = int(await self._join_lua(
                keys=keys, args=[self.member_id, token, self.epoch, gen, metadata]
            ))  # fmt: skip
            if joined > 0:
                self._joined_generation = gen
                log.info("%s joined generation %d", self.member_id, gen)
            return True
        if (
            phase == "stable"
            and agen == gen == self._joined_generation
            and self.generation != gen
            and gen >= self._min_generation
        ):
            raw = await self.redis.hget(self.keys["assignment"], self.member_id)
            if raw is None:
                # Published without us (we joined late): ask for another round.
                await self.redis.set(self.keys["rebalance"], self.member_id)
                return True
            self._holds_assignment = True
            # Before Faust starts the agents: what they write carries this generation.
            self.generation = gen
            try:
                await self._assign_local(gen, _raw(raw))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.generation = 0
                self._min_generation = gen + 1  # never this assignment again
                # Left as it was, we would sit in this generation with nothing running
                # ("stable", idle): give back what was taken and ask for a new one.
                log.exception(
                    "%s could not take its assignment of generation %d; asking for another",
                    self.member_id, gen,
                )  # fmt: skip
                await self.redis.set(self.keys["rebalance"], self.member_id)
                self._changed.set()
                return False
            if token != self.token:
                return True  # reset meanwhile: the next step revokes
            self.assigned.set()
            log.info("%s runs generation %d", self.member_id, gen)
            return False
        return phase != "stable"

    async def _evict(self, token: str, members: list[str]) -> None:
        keys = [self.keys[k] for k in ("state", "incarnations", "members", "joined")]
        await self._evict_lua(keys=keys, args=[self.member_id, token, self.epoch, *members])

    async def _lead(self, token: str) -> bool:
        _, gen, phase, agen, now_ms = self._state
        members = self.keys["members"]
        expired = [_text(m) for m in await self.redis.zrangebyscore(members, "-inf", now_ms)]
        expired = [m for m in expired if m != self.member_id]
        if expired:
            log.warning("group %s: members %s missed their lease", self.group, expired)
            await self._evict(token, expired)
        live = {_text(m) for m in await self.redis.zrangebyscore(members, now_ms, "+inf")}
        if phase != "joining":
            assigned = {_text(m) for m in await self.redis.hkeys(self.keys["assignment"])} - {
                GENERATION_FIELD
            }
            requested = await self.redis.get(self.keys["rebalance"])
            if gen == 0 or live != assigned or requested is not None:
                keys = [self.keys[k] for k in ("state", "incarnations", "leader", "rebalance")]
                fence: list[str | int] = [self.member_id, token, self.epoch, gen]
                started = int(await self._start_lua(keys=keys, args=fence))
                if started > 0:
                    log.info(
                        "group %s: generation %d (members %s)", self.group, started, sorted(live)
                    )
                    self._state = (self._state[0], started, "joining", agen, now_ms)
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
            await self._evict(token, sorted(waiting))
        participants = sorted(joined & live)
        if not participants:
            return True
        if time.monotonic() < self._settle_deadline:
            # The group state was lost: members of the old state may hold partitions
            # until their leases lapse, so nothing is handed out before that.
            return True
        metas = await self.redis.hmget(self.keys["meta"], participants)
        by_member = {m: _raw(v) for m, v in zip(participants, metas, strict=True) if v}
        assignments = await self._assign(by_member)
        args: list[str | int | bytes] = [self.member_id, token, self.epoch, gen]
        for member, assignment in assignments.items():
            args += [member, assignment]
        keys = [self.keys[k] for k in ("state", "incarnations", "leader", "assignment")]
        published = int(await self._publish_lua(keys=keys, args=args))
        if published > 0:
            log.info("group %s: published generation %d", self.group, gen)
            self._state = (self._state[0], gen, "stable", gen, now_ms)
            return False
        return True
