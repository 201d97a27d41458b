"""What the consumer does once it can no longer trust what it holds.

Two cases, both ending in a new generation that starts again from what Redis holds:

* **Our lease lapsed** (the process was frozen, starved or cut off for longer than the
  session timeout; see :meth:`GroupCoordinator.lapsed`). Another worker may own our
  partitions now. The producer refuses the writes of that generation, the coordinator
  its commits; here we drop the events Faust buffered, and rebuild the tables at the
  next assignment (events processed meanwhile changed them in memory). Our changelog
  partitions are fenced by generation at each assignment, so the append script
  refuses a stale owner's changelog writes even when the local check came too late.
* **Redis came back with less than it had** (restarted from an older snapshot or AOF,
  see :mod:`pipeline.transport.epochs`): offsets we had read are gone, and new records
  may reuse them. After a broken fetch connection we compare the server's run with the
  one our positions come from, log what was lost per partition, and rejoin; positions
  and committed offsets never stay beyond what Redis holds. On a Redis Cluster the
  server is the one holding each partition's slot, so runs are kept per partition and
  also checked when a partition's node changed (a failover the cluster client followed
  without an error reaching us, or a resharding).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import redis.asyncio as aioredis
from faust.types import TP

from pipeline.transport import epochs, streams
from pipeline.transport.clients import is_cluster
from pipeline.transport.errors import TRANSIENT_ERRORS, CommitRefused
from pipeline.transport.keys import fence_key, tp_field

if TYPE_CHECKING:
    from pipeline.transport.coordination import GroupCoordinator

log = logging.getLogger(__name__)


class ConsumerGuards:
    """Mixin of :class:`pipeline.transport.consumer.Consumer` (after Faust's class)."""

    # Provided by the consumer.
    app: Any
    _coordinator: GroupCoordinator | None
    _assignment: set[TP]
    _position: dict[TP, int]

    if TYPE_CHECKING:

        @property
        def transport_redis(self) -> aioredis.Redis: ...

        def stop_flow(self) -> None: ...

        async def seek(self, partition: TP, offset: int) -> None: ...

    def _init_guards(self) -> None:
        #: Why the tables must be rebuilt from their changelogs at the next assignment
        #: ("": they need not).
        self._rebuild_tables = ""
        #: The server run (INFO run_id) our positions and commits are consistent with:
        #: on one server (or a Sentinel group's primary) one run, set at start...
        self._start_run = ""
        #: ... and the one last seen (set when asked, kept by :meth:`_remember_runs`);
        self._single_run = ""
        #: on a cluster, the run of each partition's node, set when the partition is
        #: assigned (a failover before that is only seen in its committed offset).
        self._server_runs: dict[TP, str] = {}
        #: The fetch connection broke: check the server run before reading on.
        self._run_check_due = False
        #: No commits until that check (or the rebalance it asked for) is done.
        self._commits_held = False
        #: Offsets were lost or reused: fetch nothing until the rebalance it asked for.
        self._awaiting_rebalance = False
        #: Highest offset each partition may resume from, after Redis lost data.
        self._resume_limits: dict[TP, int] = {}

    # --- a lapsed lease ---------------------------------------------------------------

    def _on_lease_lapsed(self, token: str) -> None:
        """Our lease lapsed: drop what Faust buffered, rebuild the tables when assigned."""
        self.stop_flow()
        self.app.flow_control.suspend()
        self.app.flow_control.clear()  # every agent's buffered events
        self._rebuild_tables = "our lease lapsed"

    async def _claim_changelogs(self, generation: int, tps: set[TP]) -> None:
        """Fence our changelog partitions: appends of other generations are refused."""
        changelogs = self.app.tables.changelog_topics
        mine = sorted(tp for tp in tps if tp.topic in changelogs)
        coordinator = self._coordinator
        if not mine or coordinator is None or not coordinator.lease_valid():
            return
        # The coordinator runs ``generation`` already (it is set before Faust's assignment).
        token = coordinator.fence_token
        try:
            async with self.transport_redis.pipeline(transaction=False) as pipe:
                for tp in mine:
                    pipe.set(fence_key(tp.topic, tp.partition), token)
                await pipe.execute()
        except TRANSIENT_ERRORS as exc:
            # Our appends may then be refused as fenced, which ends this generation.
            log.warning("could not fence the changelogs of generation %d (%r)", generation, exc)

    def _on_assigned(self) -> None:
        """At an assignment, before Faust's: rebuild the tables if we must."""
        self._awaiting_rebalance = False
        if not self._rebuild_tables:
            return
        reason, self._rebuild_tables = self._rebuild_tables, ""
        tables = self.app.tables
        for table in tables.values():
            try:
                table.data._clear()
            except NotImplementedError:
                log.error("table %s cannot be emptied: it may hold stale state", table.name)
        # Faust's recovery goes on from where it last read; make it read everything.
        recovery = cast(Any, tables).recovery
        recovery.active_offsets.clear()
        recovery.standby_offsets.clear()
        log.warning("tables emptied (%s): recovering them from the changelogs", reason)

    # --- a server that lost data ------------------------------------------------------

    async def _runs_now(self, tps: Iterable[TP]) -> tuple[dict[TP, str], dict[TP, tuple[str, str]]]:
        """(each partition's server run now, the partitions whose run changed: tp ->
        (run known, run now)). Call :meth:`_remember_runs` with the first once the
        change is dealt with."""
        wanted = sorted(tps)
        r = self.transport_redis
        if not is_cluster(r):
            # One server, one run: asked even when we hold nothing, so that partitions
            # assigned later are checked against the latest run.
            run = await epochs.server_run(r)
            self._single_run = run
            known = self._start_run
            changed = {tp: (known, run) for tp in wanted} if known and known != run else {}
            return {tp: run for tp in wanted}, changed
        found = await epochs.partition_runs(r, [(tp.topic, tp.partition) for tp in wanted])
        now = {tp: found[(tp.topic, tp.partition)] for tp in wanted}
        changed = {}
        for tp, run in now.items():
            known = self._server_runs.get(tp, "")
            if known and known != run:
                changed[tp] = (known, run)
        return now, changed

    def _remember_runs(self, now: Mapping[TP, str]) -> None:
        if self._single_run:
            self._start_run = self._single_run
        else:
            self._server_runs.update(now)
        self._run_check_due = False

    async def _lost_offsets(
        self, offsets: Mapping[TP, int], runs: Mapping[TP, tuple[str, str]], what: str
    ) -> dict[TP, int]:
        """Offsets beyond what the server (now in a new run: ``runs``, tp -> (run known,
        run now)) holds: tp -> where to resume.

        Logs a WARNING per partition naming how many offsets were lost and reused.
        """
        r = self.transport_redis
        limits: dict[TP, int] = {}
        for tp, offset in sorted(offsets.items()):
            known_run, run = runs[tp]
            highwater = await streams.highwater(r, tp.topic, tp.partition)
            found = await epochs.read_epochs(r, tp.topic, tp.partition)
            reused_from = epochs.first_reused(found, known_run, run)
            target = epochs.resume_offset(offset, highwater, reused_from)
            if target < offset:
                limits[tp] = target
                log.warning(
                    "%s[%d]: Redis restarted from older data (server run %s, was %s): "
                    "the %d offsets %d-%d %s are gone (%d of them now hold new records); "
                    "resuming from %d at most",
                    tp.topic, tp.partition, run[:8], known_run[:8], offset - target,
                    target, offset - 1, what, max(0, min(offset, highwater) - target), target,
                )  # fmt: skip
        return limits

    async def _check_server_run(self) -> bool:
        """After a broken fetch connection (or a partition's node changed): did Redis
        restart, or fail over, with less than we read?

        Returns False if the servers could not be asked (try again later). If offsets we
        had read are gone or were reused by new records, logs which, fetches nothing
        more and asks for a new generation, which resumes from where it is safe.
        """
        # A client (no group) reads every partition it has a position for.
        held = self._assignment if self._coordinator is not None else set(self._position)
        positions = {tp: self._position[tp] for tp in held if tp in self._position}
        try:
            now, changed = await self._runs_now(positions)
            limits = await self._lost_offsets(
                {tp: positions[tp] for tp in changed}, changed, "this worker had read"
            )
        except TRANSIENT_ERRORS as exc:
            log.warning("could not check the server after a connection error (%r)", exc)
            return False
        self._remember_runs(now)
        if changed:
            runs = sorted({f"{run[:8]}, was {known[:8]}" for known, run in changed.values()})
            log.warning(
                "Redis restarted or failed over (server run %s) for %d partition(s)%s",
                "; ".join(runs), len(changed),
                f"; offsets lost in {len(limits)} partitions: "
                + ("rejoining to resume from there" if self._coordinator else "reading them again")
                if limits else "; nothing this worker read was lost",
            )  # fmt: skip
        if not limits:
            self._commits_held = False
            return True
        if self._coordinator is None:
            # A client (no group, no tables): it reads on from where the loss began.
            # Faust's seek also lowers its read offset, below which it drops records.
            for tp, limit in limits.items():
                if self._position.get(tp, 0) > limit:
                    await self.seek(tp, limit)
            self._commits_held = False
            return True
        # Like a rebalance: what Faust holds, and its tables, came from records Redis no
        # longer has; the new generation resumes from the commits, capped at the limits.
        self._resume_limits.update(limits)
        self._awaiting_rebalance = True
        self._rebuild_tables = "Redis lost records they were built from"
        self._coordinator.request_rebalance()
        return True

    async def _check_committed(
        self, tps: list[TP], committed: Mapping[str, int | None]
    ) -> dict[str, int | None]:
        """Committed offsets that Redis still holds; None where they must be reset.

        One beyond a limit (offsets Redis lost or reused, found now or by
        :meth:`_check_server_run`) goes back to it, and is committed so. One beyond
        the highwater is reset per ``consumer_auto_offset_reset``.
        """
        r = self.transport_redis
        out = dict(committed)
        by_tp = {tp: committed[tp_field(tp.topic, tp.partition)] for tp in tps}
        now, changed = await self._runs_now(tps)
        known = {tp: o for tp, o in by_tp.items() if o is not None and tp in changed}
        if known:
            found = await self._lost_offsets(known, changed, "committed")
            for tp, lowest in found.items():
                self._resume_limits[tp] = min(lowest, self._resume_limits.get(tp, lowest))
        self._remember_runs(now)
        lowered: dict[str, int] = {}
        for tp, offset in by_tp.items():
            field = tp_field(tp.topic, tp.partition)
            limit = self._resume_limits.pop(tp, None)
            if offset is None:
                continue
            if limit is not None and offset > limit:
                out[field] = lowered[field] = offset = limit
            highwater = await streams.highwater(r, tp.topic, tp.partition)
            if offset > highwater:
                log.warning(
                    "%s[%d]: committed offset %d is beyond the end of the partition (%d): "
                    "%d offsets were lost by Redis; resetting to the %s offset "
                    "(consumer_auto_offset_reset)",
                    tp.topic, tp.partition, offset, highwater, offset - highwater,
                    self.app.conf.consumer_auto_offset_reset,
                )  # fmt: skip
                out[field] = None
                lowered.pop(field, None)
        self._resume_limits.clear()
        if lowered and self._coordinator is not None:
            try:
                await self._coordinator.commit(lowered)
            except CommitRefused as exc:
                log.warning("could not commit the lowered offsets (%s)", exc)
            except TRANSIENT_ERRORS as exc:
                log.warning("could not commit the lowered offsets (%r)", exc)
        self._commits_held = False
        return out
