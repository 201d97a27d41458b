"""The dashboards of ``bench.groups_edge``, spread over client processes.

One process reading 500 sockets (and posting 500 samples a second beside them) lagged
0.5-4 s behind the edge, so its figures were the client's as much as the edge's. Here
each of ``procs`` processes (``spawn``, an event loop of its own) connects its share of
the dashboards, reads them, and measures its own lag: a probe sleeps 20 ms in a loop and
records how late it wakes (an event loop busy with frames wakes late; so does a frame
waiting to be read). The main process drives them over a pipe:

    child -> main   ("ready", connected)
    main  -> child  ("drop",)   close the dashboards marked ``drop`` -> ("dropped",)
    main  -> child  ("resume",) resume them from their cursors        -> ("resumed",)
    main  -> child  ("stop",)   close everything                      -> ("result", {...})

A result holds, per dashboard, what the figures need (arrival times, latencies by hop,
frame sizes, the final board's order, the resume check, own-session offsets).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from pipeline.constants import group_board_key, group_channel, session_channel
from pipeline.transport.clients import redis_client

#: How often the lag probe wakes (s).
PROBE_S = 0.02


@dataclass
class Spec:
    """One dashboard to open: its athlete number (or the coach's), token and session."""

    athlete: int
    token: str
    session_id: str
    role: str = "athlete"
    drop: bool = False


@dataclass
class Dashboard:
    spec: Spec
    ws: aiohttp.ClientWebSocketResponse | None = None
    #: Arrival (monotonic s) of each leaderboard frame.
    arrivals: list[float] = field(default_factory=list)
    #: Live frames (with an offset): (ingest_ms, emit_ms, arrival wall ms, final).
    live: list[tuple[int, int | None, float, bool]] = field(default_factory=list)
    #: Bytes of each leaderboard frame (as text, before the socket's compression).
    sizes: list[int] = field(default_factory=list)
    #: The coach's live frames: (seq, ingest_ms, emit_ms, arrival wall ms).
    log: list[tuple[int, int, int | None, float]] = field(default_factory=list)
    #: Offsets of the session channel's events received (partition, offset).
    own: list[tuple[int, int]] = field(default_factory=list)
    #: channel -> {partition: last offset seen}.
    cursors: dict[str, dict[int, int]] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    #: The final board's athlete ids in rank order (the coach's: the whole board).
    final_order: list[str] | None = None
    #: The first board after a resume and the seq stored when the resume was sent.
    resume_check: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None
    #: When the edge's pings arrived (monotonic s); each is answered at once.
    pings: list[float] = field(default_factory=list)
    closed_at: float | None = None

    def take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ack" and frame.get("op") == "subscribe":
            positions: dict[int, int] = {}
            for cursor in frame["cursor"]:
                partition, _, last = cursor.partition(":")
                positions[int(partition)] = int(last)
            self.cursors[frame["channel"]] = positions
        offset = frame.get("offset")
        if isinstance(offset, str):
            p, o = map(int, offset.split(":"))
            for name in frame.get("channels") or [frame.get("channel")]:
                if name in self.cursors:
                    self.cursors[name][p] = max(o, self.cursors[name].get(p, -1))
            if session_channel(self.spec.session_id) in (frame.get("channels") or ()):
                self.own.append((p, o))


async def _listen(d: Dashboard) -> None:
    try:
        await _read(d)
    except Exception as exc:  # a bench bug must show, not stop the socket's pongs quietly
        d.errors.append(f"listener failed: {exc!r}"[:200])
        raise


async def _read(d: Dashboard) -> None:
    assert d.ws is not None
    async for msg in d.ws:
        if msg.type == aiohttp.WSMsgType.PING:
            d.pings.append(time.monotonic())
            await d.ws.pong(msg.data)
            continue
        if msg.type == aiohttp.WSMsgType.PONG:
            continue
        if msg.type != aiohttp.WSMsgType.TEXT:
            d.errors.append(f"{msg.type.name} {msg.data!r}"[:200])
            break
        arrival, wall_ms = time.monotonic(), time.time() * 1000
        frame = orjson.loads(msg.data)
        kind = frame.get("type")
        if d.resume_check is not None:
            d.after[kind] = d.after.get(kind, 0) + 1
        if kind == "error":
            d.errors.append(f"{frame.get('code')}: {frame.get('message')}"[:200])
        if kind == "leaderboard":
            d.arrivals.append(arrival)
            d.sizes.append(len(msg.data))
            ingest, emit = frame.get("ingest_ms"), frame.get("emit_ms")
            if "offset" in frame and isinstance(ingest, int):
                emitted = emit if isinstance(emit, int) else None
                d.live.append((ingest, emitted, wall_ms, bool(frame.get("final"))))
                if d.spec.role == "coach":
                    d.log.append((frame["seq"], ingest, emitted, wall_ms))
            if frame.get("final"):
                ranked = sorted(frame["rows"], key=lambda r: r["rank"] or 1e9)
                d.final_order = [r["athlete_id"] for r in ranked]
            if d.resume_check is not None and "first" not in d.resume_check:
                d.resume_check["first"] = {"seq": frame["seq"], "full": frame["full"]}
        d.take(frame)
    d.close_code = d.ws.close_code
    d.closed_at = time.monotonic()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _probe(lateness_ms: list[float]) -> None:
    """How late this process's event loop wakes from a ``PROBE_S`` sleep, in ms."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(PROBE_S)
        lateness_ms.append((time.monotonic() - before - PROBE_S) * 1000)


async def _client(base: str, gid: str, redis_url: str, specs: list[Spec], pipe: Any) -> None:
    loop = asyncio.get_running_loop()

    async def recv() -> tuple[Any, ...]:
        return await loop.run_in_executor(None, pipe.recv)

    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    dashboards = [Dashboard(s) for s in specs]

    async def connect(d: Dashboard, resume: bool) -> None:
        # The edge's pings answered here (not by aiohttp), so that their times are known.
        d.ws = await http.ws_connect(
            f"{base}/api/v1/live/ws",
            headers={"Authorization": f"Bearer {d.spec.token}"},
            autoping=False,
        )
        d.pings = []
        if resume:
            cursors = {n: [f"{p}:{o}" for p, o in c.items()] for n, c in d.cursors.items()}
            await d.ws.send_json({"type": "resume", "cursors": cursors})
        else:
            channels = [group_channel(gid)]
            if d.spec.role == "athlete":
                channels.append(session_channel(d.spec.session_id))
            await d.ws.send_json({"type": "subscribe", "channels": channels})
        d.task = asyncio.create_task(_listen(d))

    await asyncio.gather(*[connect(d, False) for d in dashboards], return_exceptions=True)
    pipe.send(("ready", sum(1 for d in dashboards if d.ws is not None)))
    lateness: list[float] = []
    probe = asyncio.create_task(_probe(lateness))
    cpu_before, wall_before = cpu_s(os.getpid()), time.monotonic()
    victims = [d for d in dashboards if d.spec.drop]
    redis = redis_client(redis_url)
    try:
        while True:
            (what, *_) = await recv()
            if what == "drop":
                for d in victims:
                    assert d.ws is not None and d.task is not None
                    await d.ws.close()
                    await d.task
                pipe.send(("dropped",))
            elif what == "resume":
                stored = orjson.loads(await redis.get(group_board_key(gid)) or b"{}")
                for d in victims:
                    d.resume_check = {"stored_seq": stored.get("seq")}
                    await connect(d, True)
                pipe.send(("resumed",))
            elif what == "stop":
                break
    finally:
        await redis.aclose()
    cpu = (cpu_s(os.getpid()) - cpu_before) / (time.monotonic() - wall_before)
    probe.cancel()
    for d in dashboards:
        if d.ws is not None:
            await d.ws.close()
        if d.task is not None:
            d.task.cancel()
    await http.close()
    ordered = sorted(lateness)
    pipe.send(
        (
            "result",
            {
                "cpu_cores": round(cpu, 3),
                "lag_ms": {
                    "p50": round(statistics.median(ordered), 2) if ordered else None,
                    "p99": round(ordered[int(0.99 * len(ordered))], 2) if ordered else None,
                    "max": round(ordered[-1], 2) if ordered else None,
                },
                "dashboards": [_summary(d) for d in dashboards],
                "closes": {
                    str(code): sum(1 for d in dashboards if d.close_code == code)
                    for code in {d.close_code for d in dashboards}
                },
            },
        )
    )


def _summary(d: Dashboard) -> dict[str, Any]:
    return {
        "athlete": d.spec.athlete,
        "role": d.spec.role,
        "drop": d.spec.drop,
        "arrivals": d.arrivals,
        "live": d.live,
        "sizes": d.sizes,
        "log": d.log,
        # The longest time between two of the edge's pings, and from the last ping to
        # the close (s); None: fewer than two pings.
        "ping_gap_max_s": max((b - a for a, b in itertools.pairwise(d.pings)), default=None),
        "last_ping_to_close_s": (
            d.closed_at - d.pings[-1] if d.closed_at is not None and d.pings else None
        ),
        "pings": len(d.pings),
        "own": d.own,
        "final_order": d.final_order,
        "resume_check": d.resume_check,
        "after": d.after,
        "errors": d.errors[:3],
        "close": d.close_code,
    }


def _main(base: str, gid: str, redis_url: str, specs: list[Spec], pipe: Connection) -> None:
    uvloop.run(_client(base, gid, redis_url, specs, pipe))


class Clients:
    """``procs`` client processes sharing ``specs`` round-robin; stopped on exit."""

    def __init__(self, base: str, gid: str, redis_url: str, specs: list[Spec], procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for k in range(procs):
            ours, theirs = ctx.Pipe()
            share = specs[k::procs]
            proc = ctx.Process(
                target=_main, args=(base, gid, redis_url, share, theirs), daemon=True
            )
            proc.start()
            theirs.close()
            self.pipes.append(ours)
            self.procs.append(proc)

    async def _each(self, message: tuple[Any, ...] | None, timeout_s: float) -> list[Any]:
        """Send ``message`` to every child (None: nothing) and wait for each answer."""
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            if message is not None:
                pipe.send(message)

        def answer(pipe: Connection) -> Any:
            if not pipe.poll(timeout_s):
                raise TimeoutError(f"a client process did not answer {message} in {timeout_s}s")
            return pipe.recv()

        return await asyncio.gather(*[loop.run_in_executor(None, answer, p) for p in self.pipes])

    async def ready(self) -> int:
        """How many dashboards connected, once every child connected its own."""
        return sum(n for _, n in await self._each(None, 120.0))

    async def drop(self) -> None:
        await self._each(("drop",), 30.0)

    async def resume(self) -> None:
        await self._each(("resume",), 60.0)

    async def stop(self) -> list[dict[str, Any]]:
        """Every child's result (``cpu_cores``, ``lag_ms``, ``dashboards``)."""
        results = [r for _, r in await self._each(("stop",), 60.0)]
        for proc in self.procs:
            proc.join(10)
        return results

    def kill(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
