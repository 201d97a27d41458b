"""``livecoach bench e2e``: the edge under load, beside a raw aiohttp broadcast.

Each run starts private embedded servers, a live worker and one edge (``livecoach
web``) as child processes, and drives them from this process over loopback:

1. **load**: ``athletes`` post one sample a second over REST, each watched by their own
   dashboard socket; ``coaches`` each watch ``per_coach`` athletes' user channels.
   Measured: connection success, and sample-to-socket latency at the client
   (arrival time minus the ``ingest_ms`` the edge stamped when it accepted the sample)
   from ``warmup_s`` into the load on; the warm-up (every session's first samples, all
   sessions starting in the same second) is reported apart.
   Baseline, same run: a bare aiohttp server pushing a timestamped message to the
   same number of sockets at the same rate (no Redis, no worker, no auth).
2. **idle**: ``idle`` authenticated sockets with no subscription; the edge's resident
   memory growth per socket (``/proc/<pid>/status``).
3. **storm**: ``storm`` clients subscribed to sessions drop together; ``storm_events``
   events per session are appended to ``live``; all reconnect at once and resume.
   Measured: time to the last ``resumed``, and whether each got exactly what it missed.

Every figure is measured; with ``runs`` > 1 the medians are reported beside each run.

The load generator and the raw baseline run on uvloop, as the edge does, and Redis is
the distribution's (7) when installed, as in ``bench pipeline``: the load shares the
machine's two cores with what it measures. Devices post through a lean keep-alive
client (:mod:`bench.client`, one connection per device) rather than aiohttp's, whose
CPU would be taken from the edge and the worker and counted as their latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import orjson
import psycopg
import uvloop
from aiohttp import web

from bench.client import Poster, PostError
from bench.servers import private_servers
from pipeline.constants import LIVE_TOPIC
from pipeline.embedded import die_with_parent, free_port, stop_children
from pipeline.gcpolicy import full_collections_deferred
from pipeline.records import session_key
from pipeline.settings import Settings
from pipeline.transport.clients import redis_client
from pipeline.transport.streams import append, partition_for_key, read
from web.auth import mint_token

PARTITIONS = 8


def median_at(runs: list[Any], *path: str) -> float | None:
    """The median over ``runs`` of the number at ``path`` in each (runs without one are
    left out), to two decimals; None when no run has it."""
    values = []
    for run in runs:
        node: Any = run
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, int | float):
            values.append(float(node))
    return round(statistics.median(values), 2) if values else None


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "n": len(values),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 2),
    }


@contextmanager
def _stack(
    settings: Settings, *, workers: bool, extra_env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Private Redis + PostgreSQL, a live worker and one edge, all stopped afterwards;
    ``extra_env``: more variables for them (``LIVECOACH_METRICS_TOKEN``)."""
    with private_servers("livecoach-bench-e2e-") as (redis_url, db_url):
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")},
            "LIVECOACH_REDIS_URL": redis_url,
            "LIVECOACH_DATABASE_URL": db_url,
            "LIVECOACH_SAMPLES_PARTITIONS": str(PARTITIONS),
            "LIVECOACH_LIVE_PARTITIONS": str(PARTITIONS),
            "LIVECOACH_LOG_LEVEL": "WARNING",
            "LIVECOACH_JWT_SECRET": settings.jwt_secret_value(),
            **(extra_env or {}),
        }
        procs: list[subprocess.Popen[bytes]] = []
        commands = [["web", "--host", "127.0.0.1", "--port", str(port)]]
        if workers:
            commands.append(["worker", "--app", "live"])
        try:
            for args in commands:
                child_env = {**env, "LIVECOACH_WORKER_WEB_PORT": str(free_port())}
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pipeline.cli", *args],
                        env=child_env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        preexec_fn=die_with_parent(signal.SIGTERM),
                    )
                )
            yield {
                "redis_url": redis_url,
                "database_url": db_url,
                "port": port,
                "edge_pid": procs[0].pid,
                "base": f"http://127.0.0.1:{port}",
            }
        finally:
            stop_children(procs)


def _uid(n: int) -> UUID:
    """The bench's user number ``n`` as a user id: ``UUID(int=n)``, which SQL writes as
    ``lpad(to_hex(n), 32, '0')::uuid`` (see _seed)."""
    return UUID(int=n)


#: SQL of _uid.
_SQL_UID = "lpad(to_hex({}), 32, '0')::uuid"


def _seed(database_url: str, athletes: int, coaches: int, per_coach: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO users (id, name, role) SELECT {_SQL_UID.format('g')}, 'a' || g,"
            " 'athlete' FROM generate_series(1, %s) g",
            (athletes,),
        )
        conn.execute(
            f"INSERT INTO users (id, name, role) SELECT {_SQL_UID.format('100000 + g')},"
            " 'c' || g, 'coach' FROM generate_series(1, %s) g",
            (coaches,),
        )
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id)"
            f" SELECT {_SQL_UID.format('100000 + c')},"
            f" {_SQL_UID.format('1 + ((c - 1) * %s + k) %% %s')}"
            " FROM generate_series(1, %s) c, generate_series(0, %s - 1) k",
            (per_coach, athletes, coaches, per_coach),
        )


async def _wait_ready(base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the edge at {base} did not become ready in {timeout_s:.0f} s")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Load:
    def __init__(self, settings: Settings, base: str) -> None:
        self.settings = settings
        self.base = base
        self.ws_url = base + "/api/v1/live/ws"
        #: (ingest_ms, latency_ms) of each metrics_update received.
        self.latencies: list[tuple[float, float]] = []
        self.connected = 0
        self.failed = 0

    def token(self, user: int, role: str) -> str:
        """A token of the bench's user number ``user``."""
        return mint_token(self.settings, user_id=_uid(user), role=role)  # type: ignore[arg-type]

    async def socket(
        self, http: aiohttp.ClientSession, user_id: int, role: str, channels: list[str]
    ) -> aiohttp.ClientWebSocketResponse | None:
        try:
            ws = await http.ws_connect(
                self.ws_url, headers={"Authorization": f"Bearer {self.token(user_id, role)}"}
            )
            await ws.send_json({"type": "subscribe", "channels": channels})
            self.connected += 1
            return ws
        except (aiohttp.ClientError, OSError):
            self.failed += 1
            return None

    async def listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now_ms = time.time() * 1000
            frame = orjson.loads(msg.data)
            if frame.get("type") == "metrics_update" and "ingest_ms" in frame:
                self.latencies.append((frame["ingest_ms"], now_ms - frame["ingest_ms"]))


async def _load_phase(
    settings: Settings,
    stack: dict[str, Any],
    athletes: int,
    coaches: int,
    per_coach: int,
    duration_s: float,
    warmup_s: float,
) -> dict[str, Any]:
    load = _Load(settings, stack["base"])
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sessions: dict[int, str] = {}
        posters = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        try:
            for a in range(1, athletes + 1):
                async with posters.post(
                    stack["base"] + "/api/v1/live/sessions/start",
                    json={},
                    headers={"Authorization": f"Bearer {load.token(a, 'athlete')}"},
                ) as resp:
                    sessions[a] = str((await resp.json())["id"])
            sockets = await asyncio.gather(
                *[
                    load.socket(http, a, "athlete", [f"live:session:{sessions[a]}"])
                    for a in sessions
                ],
                *[
                    load.socket(
                        http,
                        100000 + c,
                        "coach",
                        [
                            f"live:user:{_uid(1 + ((c - 1) * per_coach + k) % athletes)}"
                            for k in range(per_coach)
                        ],
                    )
                    for c in range(1, coaches + 1)
                ],
            )
            listeners = [asyncio.create_task(load.listen(ws)) for ws in sockets if ws]
            await asyncio.sleep(1.0)
            load.latencies.clear()
            t0 = time.time() - duration_s - 5

            # Outcomes of the posts by status (or by error): 202 is every sample accepted.
            posts: dict[int | str, int] = {}

            # Each device posts at its own phase of the second, on one schedule shared by
            # all and fixed before any starts: phases taken from when each task first ran
            # put the devices delayed by the start-up (minting a thousand tokens) in step
            # for the whole run, a burst of ~90 posts at every second.
            phase = {a: (k % 1000) / 1000 for k, a in enumerate(sessions)}

            async def device(a: int, poster: Poster) -> None:
                try:
                    for i in range(int(duration_s)):
                        await asyncio.sleep(max(0.0, origin + phase[a] + i - time.monotonic()))
                        body = {"t": t0 + i, "heart_rate": 120 + i % 30, "power_w": 200,
                                "cadence": 90}  # fmt: skip
                        try:
                            status: int | str = await poster.post(orjson.dumps(body))
                        except PostError:
                            status = "PostError"
                        posts[status] = posts.get(status, 0) + 1
                finally:
                    poster.close()

            posters_by_athlete = {
                a: Poster(
                    "127.0.0.1",
                    stack["port"],
                    f"/api/v1/live/sessions/{sessions[a]}/update",
                    {"Authorization": f"Bearer {load.token(a, 'athlete')}"},
                )
                for a in sessions
            }
            # Devices keep their connection open, as the dashboards do (one that cannot
            # connect now tries again with each post, and counts a PostError if it fails).
            for chunk in range(0, len(sessions), 500):
                await asyncio.gather(
                    *[p.connect() for p in list(posters_by_athlete.values())[chunk : chunk + 500]],
                    return_exceptions=True,
                )
            origin = time.monotonic() + 0.5  # every device ready: the schedule starts
            measured_from_ms = (time.time() + 0.5 + warmup_s) * 1000
            await asyncio.gather(*[device(a, posters_by_athlete[a]) for a in sessions])
            await asyncio.sleep(2.0)
            pipeline = list(load.latencies)
            # The edge alone: the same sockets and rate, events appended to live
            # directly (as the worker would), stamped when appended.
            load.latencies.clear()
            await _append_live_at_1hz(stack["redis_url"], sessions, duration_s)
            await asyncio.sleep(2.0)
            edge_only = [latency for _, latency in load.latencies]
            for task in listeners:
                task.cancel()
            for ws in sockets:
                if ws is not None:
                    await ws.close()
        finally:
            await posters.close()
    total = athletes + coaches
    return {
        "sockets": total,
        "connection_success_pct": round(100.0 * load.connected / total, 2),
        "posts": {str(k): v for k, v in sorted(posts.items(), key=str)},
        "latency_ms": _pct([lat for ingest, lat in pipeline if ingest >= measured_from_ms]),
        # Every session's first samples, all in the same second: reported apart.
        "warmup_latency_ms": _pct([lat for ingest, lat in pipeline if ingest < measured_from_ms]),
        "edge_only_latency_ms": _pct(edge_only),
        # The worker's share: from the edge accepting a sample to the worker appending
        # its metrics_update to live (the entry's timestamp); the rest is the edge's.
        "worker_share_ms": _pct(await _worker_share_ms(stack["redis_url"], measured_from_ms)),
    }


async def _append_live_at_1hz(
    redis_url: str, sessions: dict[int, str], duration_s: float, slices: int = 20
) -> None:
    """One metrics_update per session per second, in ``slices`` bursts a second."""
    redis = redis_client(redis_url)
    items = sorted(sessions.items())
    try:
        start = time.monotonic()
        for tick in range(int(duration_s) * slices):
            part = items[tick % slices :: slices]
            by_partition: dict[int, list[Any]] = {}
            now_ms = int(time.time() * 1000)
            for athlete, sid in part:
                key = session_key(sid)
                # A stand-in of the agents' event: the fields the protocol requires.
                event = {"type": "metrics_update", "session_id": sid,
                         "user_id": str(_uid(athlete)), "ingest_ms": now_ms,
                         "timestamp": now_ms / 1000, "bench": "direct",
                         "metrics": {"heart_rate": 140, "pace": None, "distance": None,
                                     "cadence": None}}  # fmt: skip
                by_partition.setdefault(partition_for_key(key, PARTITIONS), []).append(
                    (key, json.dumps(event).encode(), None, now_ms)
                )
            await asyncio.gather(
                *[append(redis, LIVE_TOPIC, p, entries) for p, entries in by_partition.items()]
            )
            await asyncio.sleep(max(0.0, start + (tick + 1) / slices - time.monotonic()))
    finally:
        await redis.aclose()


async def _worker_share_ms(redis_url: str, since_ms: float) -> list[float]:
    redis = redis_client(redis_url)
    out: list[float] = []
    try:
        for p in range(PARTITIONS):
            for _, (_, value, _, ts_ms) in await read(redis, LIVE_TOPIC, p, 0, count=1_000_000):
                if value is None:  # a tombstone (none in live)
                    continue
                event = json.loads(value)
                if event.get("type") != "metrics_update" or "bench" in event:
                    continue
                if event["ingest_ms"] >= since_ms:
                    out.append(ts_ms - event["ingest_ms"])
    finally:
        await redis.aclose()
    return out


async def _raw_broadcast_ms(
    athletes: int, coaches: int, per_coach: int, duration_s: float
) -> dict[str, Any]:
    """The same sockets and message rate through a bare aiohttp server."""
    sockets: dict[int, list[web.WebSocketResponse]] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=True)
        await ws.prepare(request)
        for key in request.query.get("keys", "").split(","):
            sockets.setdefault(int(key), []).append(ws)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    latencies: list[float] = []

    async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            latencies.append(time.time() * 1000 - json.loads(msg.data)["ingest_ms"])

    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            url = f"http://127.0.0.1:{port}/ws?keys="
            clients = [await http.ws_connect(url + str(a)) for a in range(1, athletes + 1)]
            clients += [
                await http.ws_connect(
                    url
                    + ",".join(
                        str(1 + ((c - 1) * per_coach + k) % athletes) for k in range(per_coach)
                    )
                )
                for c in range(1, coaches + 1)
            ]
            tasks = [asyncio.create_task(listen(ws)) for ws in clients]
            for _ in range(int(duration_s)):
                start = time.monotonic()
                for a in range(1, athletes + 1):
                    frame = json.dumps({"type": "metrics_update", "ingest_ms": time.time() * 1000})
                    for server_ws in sockets.get(a, []):
                        await server_ws.send_str(frame)
                    if a % 50 == 0:
                        await asyncio.sleep(0)
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
            await asyncio.sleep(1.0)
            for task in tasks:
                task.cancel()
            for ws in clients:
                await ws.close()
    finally:
        await runner.cleanup()
    return {"latency_ms": _pct(latencies)}


async def _idle_phase(settings: Settings, stack: dict[str, Any], idle: int) -> dict[str, Any]:
    load = _Load(settings, stack["base"])
    before = _rss_kb(stack["edge_pid"])
    opened: list[aiohttp.ClientWebSocketResponse] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for start in range(0, idle, 500):
            batch = await asyncio.gather(
                *[
                    http.ws_connect(
                        load.ws_url,
                        headers={"Authorization": f"Bearer {load.token(1 + i % 1000, 'athlete')}"},
                    )
                    for i in range(start, min(idle, start + 500))
                ],
                return_exceptions=True,
            )
            opened += [ws for ws in batch if isinstance(ws, aiohttp.ClientWebSocketResponse)]
        await asyncio.sleep(2.0)
        after = _rss_kb(stack["edge_pid"])
        for ws in opened:
            await ws.close()
    return {
        "connections": len(opened),
        "requested": idle,
        "edge_rss_growth_kb": after - before,
        "kb_per_connection": round((after - before) / max(1, len(opened)), 2),
    }


def _stand_in_alert(session_id: str, athlete: int, seq: int, now_ms: int) -> dict[str, Any]:
    """An alert as the agents publish it (a fresh id each: the edge drops a repeated id)."""
    return {
        "type": "alert",
        "session_id": session_id,
        "user_id": str(_uid(athlete)),
        "timestamp": now_ms / 1000,
        "seq": seq,
        "alert": {
            "id": str(uuid4()),
            "rule": "bench",
            "severity": "info",
            "message": "a stand-in alert of the resume storm",
            "metric": "heart_rate",
            "current": 0.0,
            "threshold": 0.0,
        },
    }


async def _storm_phase(
    settings: Settings, stack: dict[str, Any], storm: int, sessions_n: int, events: int
) -> dict[str, Any]:
    load = _Load(settings, stack["base"])
    base = stack["base"]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        session_ids: list[tuple[int, str]] = []
        for a in range(1, sessions_n + 1):
            async with http.post(
                base + "/api/v1/live/sessions/start",
                json={},
                headers={"Authorization": f"Bearer {load.token(a, 'athlete')}"},
            ) as resp:
                session_ids.append((a, str((await resp.json())["id"])))
        cursors: list[tuple[int, str, str]] = []

        async def first_connect(i: int) -> None:
            athlete, sid = session_ids[i % len(session_ids)]
            ws = await http.ws_connect(
                load.ws_url, headers={"Authorization": f"Bearer {load.token(athlete, 'athlete')}"}
            )
            await ws.send_json({"type": "subscribe", "channel": f"live:session:{sid}"})
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame.get("type") == "ack":
                    cursors.append((athlete, sid, frame["cursor"][0]))
                    break
            await ws.close()

        for start in range(0, storm, 500):
            await asyncio.gather(*[first_connect(i) for i in range(start, min(storm, start + 500))])
        redis = redis_client(stack["redis_url"])
        try:
            now = int(time.time() * 1000)
            for athlete, sid in session_ids:
                key = session_key(sid)
                await append(
                    redis,
                    LIVE_TOPIC,
                    partition_for_key(key, PARTITIONS),
                    [
                        (
                            key,
                            json.dumps(_stand_in_alert(sid, athlete, n, now)).encode(),
                            None,
                            now,
                        )
                        for n in range(events)
                    ],
                )
        finally:
            await redis.aclose()
        outcomes = {"exact": 0, "wrong": 0, "failed": 0}
        closes: dict[str, int] = {}
        last_resumed: list[float] = []

        async def resume(athlete: int, sid: str, cursor: str) -> None:
            try:
                ws = await http.ws_connect(
                    load.ws_url,
                    headers={"Authorization": f"Bearer {load.token(athlete, 'athlete')}"},
                )
                await ws.send_json({"type": "resume", "cursors": {f"live:session:{sid}": cursor}})
                seqs: list[int] = []
                async for msg in ws:
                    frame = json.loads(msg.data)
                    if frame.get("type") == "alert":
                        seqs.append(frame["seq"])
                    elif frame.get("type") == "error":
                        reason = f"error {frame.get('code')}: {frame.get('message')}"
                        closes[reason] = closes.get(reason, 0) + 1
                        outcomes["failed"] += 1
                        break
                    elif frame.get("type") == "resumed":
                        last_resumed.append(time.monotonic())
                        ok = frame["recovered"] and seqs == list(range(events))
                        outcomes["exact" if ok else "wrong"] += 1
                        break
                else:
                    outcomes["failed"] += 1  # closed before resumed
                    reason = f"closed {ws.close_code}"
                    closes[reason] = closes.get(reason, 0) + 1
                await ws.close()
            except (aiohttp.ClientError, OSError):
                outcomes["failed"] += 1

        started = time.monotonic()
        await asyncio.gather(*[resume(*c) for c in cursors])
    return {
        "clients": storm,
        "events_missed_each": events,
        "resuming": len(cursors),
        "outcomes": outcomes,
        "failures": closes,
        "seconds_to_last_resumed": round(max(last_resumed, default=started) - started, 3),
    }


def bench_e2e(
    settings: Settings,
    *,
    athletes: int = 1000,
    coaches: int = 100,
    per_coach: int = 10,
    duration_s: int = 60,
    warmup_s: float = 2.0,
    idle: int = 10_000,
    storm: int = 5000,
    storm_events: int = 20,
    runs: int = 3,
) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        with _stack(settings, workers=True) as stack:
            _seed(stack["database_url"], athletes, coaches, per_coach)
            uvloop.run(_wait_ready(stack["base"]))
            run: dict[str, Any] = {}
            # The load generator is the measuring client: its own full collections
            # would show up as the edge's latency (as the raw baseline's).
            with full_collections_deferred():
                run["load"] = uvloop.run(
                    _load_phase(settings, stack, athletes, coaches, per_coach, duration_s, warmup_s)
                )
                run["raw_aiohttp_broadcast"] = uvloop.run(
                    _raw_broadcast_ms(athletes, coaches, per_coach, duration_s)
                )
            run["idle"] = uvloop.run(_idle_phase(settings, stack, idle))
            run["storm"] = uvloop.run(
                _storm_phase(settings, stack, storm, min(athletes, 500), storm_events)
            )
            results.append(run)

    def median(path: list[str]) -> float | None:
        return median_at(results, *path)

    return {
        "params": {
            "athletes": athletes,
            "coaches": coaches,
            "per_coach": per_coach,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "idle": idle,
            "storm": storm,
            "storm_events": storm_events,
            "runs": runs,
        },
        "median": {
            "connection_success_pct": median(["load", "connection_success_pct"]),
            "edge_p99_ms": median(["load", "latency_ms", "p99"]),
            "edge_p95_ms": median(["load", "latency_ms", "p95"]),
            "warmup_p99_ms": median(["load", "warmup_latency_ms", "p99"]),
            "worker_share_p99_ms": median(["load", "worker_share_ms", "p99"]),
            "edge_only_p99_ms": median(["load", "edge_only_latency_ms", "p99"]),
            "raw_p99_ms": median(["raw_aiohttp_broadcast", "latency_ms", "p99"]),
            "idle_kb_per_connection": median(["idle", "kb_per_connection"]),
            "storm_seconds_to_last_resumed": median(["storm", "seconds_to_last_resumed"]),
        },
        "runs": results,
    }
