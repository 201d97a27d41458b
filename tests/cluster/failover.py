"""A kill -9 of the Redis primary while devices post: what was acknowledged and lost.

The edge needs :data:`LOAD_CONFIG` (REST rate limits far above the devices' rate).

Devices post one sample per request as fast as the edge answers; every 202 is
recorded. After the kill, posting goes on until a sample acknowledged after the kill
shows on the dashboard's socket, then a few seconds more; finally the ``samples``
topic on the surviving primary is read back and compared with what was acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from pipeline.constants import SAMPLES_TOPIC
from pipeline.models import iso_z
from pipeline.transport.clients import redis_client
from pipeline.transport.streams import read
from tests.cluster.core_path import T0, Watched
from tests.test_agents_e2e import PARTITIONS
from tests.web.conftest import ATHLETE, Running
from web.edge import EdgeConfig

#: The devices post as fast as they are answered: lift the per-user REST limit.
LOAD_CONFIG = EdgeConfig(rest_user_rate=100_000.0, rest_user_burst=100_000.0)
#: Index of the first sample posted under load (the core path posts 0-24, 1 s apart).
FIRST_T = 25
#: Samples under load are this far apart in time, so that the tens of thousands a long
#: failover sees stay within the edge's clock window (none in the future).
LOAD_STEP_S = 0.01


def load_time(t: int) -> float:
    """The sample time of index ``t`` (1 s apart before :data:`FIRST_T`, then
    :data:`LOAD_STEP_S`)."""
    return T0 + min(t, FIRST_T) + max(0, t - FIRST_T) * LOAD_STEP_S


def load_index(at: float) -> int:
    """The index of a sample posted at ``at`` (the inverse of :func:`load_time`)."""
    since = at - T0
    if since < FIRST_T - 0.5:
        return round(since)
    return FIRST_T + round((since - FIRST_T) / LOAD_STEP_S)


async def post_at(edge: Running, sid: str, t: int) -> aiohttp.ClientResponse:
    """Post the sample of index ``t`` (at :func:`load_time`)."""
    sample = {"session_id": sid, "t": load_time(t), "heart_rate": 150.0, "power_w": 210.0}
    async with edge.session.post(
        edge.url(f"/api/v1/live/sessions/{sid}/update"),
        headers=edge.headers(ATHLETE, "athlete"),
        json={"samples": [sample]},
    ) as resp:
        await resp.read()
        return resp


@dataclass
class Outcome:
    killed_at: float
    #: t index of an acknowledged sample -> when its request was sent.
    acked: dict[int, float] = field(default_factory=dict)
    #: When each 202 came back, in order.
    answered: list[float] = field(default_factory=list)
    refused: int = 0
    unexpected: list[int] = field(default_factory=list)  # statuses other than 202 and 503
    #: Redis commands the primary ran per sample acknowledged before the kill (edge,
    #: live and store workers together), when a probe was given.
    commands_per_sample: float | None = None
    flowing_at: float | None = None
    stored: set[int] = field(default_factory=set)
    #: Samples stored more than once (a retried append whose first reply was lost).
    duplicates: int | None = None

    @property
    def lost(self) -> list[int]:
        return sorted(set(self.acked) - self.stored)

    def longest_gap_s(self) -> float:
        """The longest wait between two acknowledgements (the stall)."""
        times = sorted(self.answered)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    @property
    def acked_before_kill(self) -> int:
        return sum(1 for at in self.acked.values() if at < self.killed_at)

    def summary(self, promoted_at: float) -> str:
        promoted_s = promoted_at - self.killed_at
        lost = self.lost
        window = (
            f"; lost ones acknowledged {self.killed_at - self.acked[lost[0]]:.3f}-"
            f"{self.killed_at - self.acked[lost[-1]]:.3f} s before the kill"
            if lost
            else ""
        )
        assert self.flowing_at is not None
        ops = (
            f"; {self.commands_per_sample:.1f} Redis commands per sample before it"
            if self.commands_per_sample is not None
            else ""
        )
        return (
            f"promoted {promoted_s:.2f} s after the kill{ops}; metrics on the socket again "
            f"{self.flowing_at - self.killed_at:.2f} s after it; {len(self.acked)} samples "
            f"acknowledged ({self.acked_before_kill} sent before the kill), {self.refused} "
            f"refused (503), {len(lost)} acknowledged and lost{window}"
            + (f"; {self.duplicates} stored twice" if self.duplicates is not None else "")
            + f"; longest wait between two 202s {self.longest_gap_s():.2f} s"
        )


async def post_through_a_kill(
    edge: Running,
    watched: Watched,
    kill: Callable[[], None],
    *,
    devices: int = 4,
    before_s: float = 2.0,
    after_flow_s: float = 2.0,
    deadline_s: float = 60.0,
    commands_probe: Callable[[], int] | None = None,
) -> Outcome:
    """Post from ``devices`` concurrent loops, ``kill()`` after ``before_s``; the outcome."""
    counter = iter(range(FIRST_T, FIRST_T + 1_000_000))
    outcome = Outcome(killed_at=float("inf"))
    stop = asyncio.Event()
    #: The metrics timestamps of samples sent after the kill and acknowledged.
    after_kill: set[str] = set()

    async def device() -> None:
        while not stop.is_set():
            t = next(counter)
            sent_at = time.monotonic()
            try:
                resp = await post_at(edge, watched.sid, t)
            except OSError:
                outcome.refused += 1
                continue
            if resp.status == 202:
                outcome.acked[t] = sent_at
                outcome.answered.append(time.monotonic())
                if sent_at > outcome.killed_at:
                    after_kill.add(iso_z(load_time(t)))
            elif resp.status == 503:
                outcome.refused += 1
                await asyncio.sleep(0.05)
            else:
                outcome.unexpected.append(resp.status)
                await asyncio.sleep(0.05)

    async def watch() -> None:
        # The first sample sent after the kill and acknowledged, seen on the socket.
        while True:
            frame = await watched.ws.receive_json(timeout=deadline_s)
            if frame.get("type") != "metrics_update" or outcome.killed_at == float("inf"):
                continue
            if frame["timestamp"] in after_kill:
                outcome.flowing_at = time.monotonic()
                return

    tasks = [asyncio.create_task(device()) for _ in range(devices)]
    watcher = asyncio.create_task(watch())
    try:
        await asyncio.sleep(before_s / 2)  # let the load settle, then count commands
        counted_from = (
            (await asyncio.to_thread(commands_probe), len(outcome.acked))
            if commands_probe
            else None
        )
        await asyncio.sleep(before_s / 2)
        if commands_probe is not None and counted_from is not None:
            commands = await asyncio.to_thread(commands_probe) - counted_from[0]
            outcome.commands_per_sample = commands / max(1, len(outcome.acked) - counted_from[1])
        await asyncio.to_thread(kill)
        outcome.killed_at = time.monotonic()  # samples sent from now on reach a new primary
        await asyncio.wait_for(watcher, deadline_s)
        await asyncio.sleep(after_flow_s)
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert not outcome.unexpected, f"statuses other than 202/503: {outcome.unexpected[:10]}"
    return outcome


async def stored_samples(redis_url: str, sid: str) -> set[int]:
    """The t indexes of ``sid``'s samples in the ``samples`` topic at ``redis_url``."""
    return set(await stored_counts(redis_url, sid))


async def stored_counts(redis_url: str, sid: str) -> Counter[int]:
    """How many times each t index of ``sid``'s samples is in the ``samples`` topic (any
    topology's URL)."""
    client = redis_client(redis_url)
    found: Counter[int] = Counter()
    try:
        for partition in range(PARTITIONS):
            for _, (_, value, _, _) in await read(
                client, SAMPLES_TOPIC, partition, 0, count=1_000_000
            ):
                record = json.loads(value or b"{}")
                if record.get("session_id") == sid:
                    found.update(load_index(s["t"]) for s in record.get("samples", []))
    finally:
        await client.aclose()
    return found
