"""Issue 20's acceptance bench: one race of ``athletes`` posting at 1 Hz through the
real edge and live worker, watched by ``athletes`` dashboards (each its athlete's: the
group channel and its own session channel), all on this machine over loopback.

``python -m bench.groups_edge [--athletes 500] [--duration 60] [--drop 30] [--dropped 10]``

Measured, from the dashboards' side:

- leaderboard frames per socket: the most in any one second (sliding), the smallest
  gap between two, and frames per second on average;
- sample-to-leaderboard latency at the socket: arrival minus the board's ``ingest_ms``
  (the newest sample acceptance time the board includes), live frames only;
- ``dropped`` dashboards close for ``drop`` seconds mid-run and resume: the first
  board after the resume is full and not older than the board the agents had stored
  when the resume was sent; their own session channel has no gap (every entry of
  their session in the stream between the first and the last they got, got once);
- the final standings (the coach finishes the race): the stored ranks against an
  offline ranking of the same samples (distance covered, highest first).

Bounded: ``duration`` at most 300 s, every wait has a timeout; the servers, worker and
edge are private child processes stopped at the end (bench.e2e's stack).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import uvloop

from bench.client import Poster, PostError
from bench.e2e import PARTITIONS, _pct, _seed, _stack, _uid, _wait_ready
from pipeline.constants import LIVE_TOPIC, group_board_key, group_channel, session_channel
from pipeline.records import session_key
from pipeline.settings import Settings, load_settings
from pipeline.transport.clients import redis_client
from pipeline.transport.streams import partition_for_key, read
from web.auth import mint_token

COACH = 100001


def speed_of(athlete: int) -> float:
    """Each athlete's steady speed (m/s): all different, so the ranking has no ties."""
    return 2.5 + athlete * 0.003


@dataclass
class Dashboard:
    athlete: int
    session_id: str
    role: str = "athlete"
    ws: aiohttp.ClientWebSocketResponse | None = None
    #: (arrival monotonic s, arrival wall ms, frame) of each leaderboard frame.
    boards: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)
    #: Offsets of the session channel's events received (partition, offset).
    own: list[tuple[int, int]] = field(default_factory=list)
    #: channel -> {partition: last offset seen}.
    cursors: dict[str, dict[int, int]] = field(default_factory=dict)
    resumed: int = 0
    #: Bytes of each leaderboard frame (as text, before the socket's compression).
    sizes: list[int] = field(default_factory=list)
    #: Frames after the resume, by type; errors; the close code.
    after: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    final: dict[str, Any] | None = None
    #: The first board after a resume and the seq stored when the resume was sent.
    resume_check: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None

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
            if session_channel(self.session_id) in (frame.get("channels") or ()):
                self.own.append((p, o))
        if kind == "resumed":
            self.resumed += 1


async def _listen(d: Dashboard) -> None:
    assert d.ws is not None
    async for msg in d.ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        frame = orjson.loads(msg.data)
        kind = frame.get("type")
        if d.resume_check is not None:
            d.after[kind] = d.after.get(kind, 0) + 1
        if kind == "error":
            d.errors.append(f"{frame.get('code')}: {frame.get('message')}"[:200])
        if kind == "leaderboard" and frame.get("final"):
            d.final = frame
        if frame.get("type") == "leaderboard":
            d.sizes.append(len(msg.data))
            d.boards.append((time.monotonic(), time.time() * 1000, frame))
            if d.resume_check is not None and "first" not in d.resume_check:
                d.resume_check["first"] = {"seq": frame["seq"], "full": frame["full"]}
        d.take(frame)
    d.close_code = d.ws.close_code


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _window_max(times: list[float], width_s: float = 1.0) -> int:
    """The most of ``times`` (sorted) within any ``width_s``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def _run(settings: Settings, athletes: int, duration_s: float, drop_s: float,
               dropped: int) -> dict[str, Any]:  # fmt: skip
    with _stack(settings, workers=True) as stack:
        await _wait_ready(stack["base"])
        _seed(stack["database_url"], athletes, 1, athletes)
        base, port = stack["base"], stack["port"]

        def token(user: int, role: str) -> str:
            return mint_token(settings, user_id=_uid(user), role=role)  # type: ignore[arg-type]

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:

            async def api(user: int, role: str, method: str, path: str, body: Any = None) -> Any:
                async with http.request(method, f"{base}/api/v1/live{path}", json=body,
                                        headers={"Authorization": f"Bearer {token(user, role)}"}
                                        ) as resp:  # fmt: skip
                    text = await resp.text()
                    if resp.status >= 300:
                        raise RuntimeError(f"{method} {path}: {resp.status} {text[:200]}")
                    return json.loads(text) if text else None

            group = await api(COACH, "coach", "POST", "/groups",
                              {"name": "bench race", "sport": "run", "kind": "race",
                               "starts_at": time.time()})  # fmt: skip
            gid = str(group["id"])
            # Invitations straight into the table (the REST path is tested elsewhere; the
            # coach's 500 calls would wait on the per-user rate limit).
            with psycopg.connect(stack["database_url"], autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO live_group_members (group_id, athlete_id)"
                    " SELECT %s, athlete_id FROM coach_athletes WHERE coach_id = %s",
                    (gid, _uid(COACH)),
                )
            sessions: dict[int, str] = {}
            sem = asyncio.Semaphore(50)

            async def start(a: int) -> None:
                async with sem:
                    row = await api(a, "athlete", "POST", "/sessions/start", {"group_id": gid})
                    sessions[a] = str(row["id"])

            await asyncio.gather(*[start(a) for a in range(1, athletes + 1)])

            ws_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            dashboards = {a: Dashboard(a, sessions[a]) for a in sessions}

            async def connect(d: Dashboard, resume: bool) -> None:
                d.ws = await ws_http.ws_connect(
                    f"{base}/api/v1/live/ws",
                    headers={"Authorization": f"Bearer {token(d.athlete, d.role)}"},
                )
                channels = [group_channel(gid)]
                if d.role == "athlete":
                    channels.append(session_channel(d.session_id))
                if resume:
                    cursors = {n: [f"{p}:{o}" for p, o in c.items()] for n, c in d.cursors.items()}
                    await d.ws.send_json({"type": "resume", "cursors": cursors})
                else:
                    await d.ws.send_json({"type": "subscribe", "channels": channels})
                d.task = asyncio.create_task(_listen(d))

            # The coach's dashboard: the whole board (members get their window).
            coach = Dashboard(COACH, "", role="coach")
            await asyncio.gather(connect(coach, False),
                                 *[connect(d, False) for d in dashboards.values()])  # fmt: skip
            connected = sum(1 for d in dashboards.values() if d.ws is not None)
            await asyncio.sleep(2.0)

            t0 = time.time() - duration_s - 5
            posts: dict[int | str, int] = {}
            last: dict[int, float] = {}
            posters = {a: Poster("127.0.0.1", port, f"/api/v1/live/sessions/{sid}/update",
                                 {"Authorization": f"Bearer {token(a, 'athlete')}"})
                       for a, sid in sessions.items()}  # fmt: skip
            await asyncio.gather(*[p.connect() for p in posters.values()], return_exceptions=True)
            origin = time.monotonic() + 0.5
            phase = {a: (k % 1000) / 1000 for k, a in enumerate(sessions)}

            async def device(a: int) -> None:
                for i in range(int(duration_s)):
                    await asyncio.sleep(max(0.0, origin + phase[a] + i - time.monotonic()))
                    distance = speed_of(a) * i
                    body = {"t": t0 + i, "heart_rate": 140, "speed_m_s": speed_of(a),
                            "distance_m": distance, "power_w": 200}  # fmt: skip
                    try:
                        status: int | str = await posters[a].post(orjson.dumps(body))
                    except PostError:
                        status = "PostError"
                    posts[status] = posts.get(status, 0) + 1
                    if status == 202:
                        last[a] = distance

            redis = redis_client(stack["redis_url"])

            async def drop_and_resume() -> None:
                await asyncio.sleep(duration_s / 4)
                victims = [dashboards[a] for a in list(dashboards)[:dropped]]
                for d in victims:
                    assert d.ws is not None and d.task is not None
                    await d.ws.close()
                    await d.task
                await asyncio.sleep(drop_s)
                stored = orjson.loads(await redis.get(group_board_key(gid)) or b"{}")
                for d in victims:
                    d.resume_check = {"stored_seq": stored.get("seq")}
                    await connect(d, True)

            loaders = [device(a) for a in sessions]
            cpu_before, wall_before = _cpu_s(stack["edge_pid"]), time.monotonic()
            await asyncio.gather(*loaders, drop_and_resume())
            edge_cpu = (_cpu_s(stack["edge_pid"]) - cpu_before) / (time.monotonic() - wall_before)
            for p in posters.values():
                p.close()
            await asyncio.sleep(3.0)
            await api(COACH, "coach", "POST", f"/groups/{gid}/finish")
            standings: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                standings = (await api(COACH, "coach", "GET", f"/groups/{gid}")).get(
                    "standings"
                ) or []
                if len(standings) >= athletes:
                    break
                await asyncio.sleep(1.0)
            for d in [*dashboards.values(), coach]:
                if d.ws is not None:
                    await d.ws.close()
                if d.task is not None:
                    d.task.cancel()
            await ws_http.close()

            # Own-session gaps of the dropped dashboards, against the stream.
            gaps = {}
            for d in list(dashboards.values())[:dropped]:
                key = session_key(d.session_id)
                partition = partition_for_key(key, PARTITIONS)
                entries = await read(redis, LIVE_TOPIC, partition, 0, count=1_000_000)
                got = sorted(o for _, o in d.own)
                expected = [
                    offset
                    for offset, (k, _, _, _) in entries
                    if k == key and got and got[0] <= offset <= got[-1]
                ]
                gaps[d.athlete] = {"expected": len(expected), "got": len(got),
                                   "missing": len(set(expected) - set(got)),
                                   "twice": len(got) - len(set(got))}  # fmt: skip
            await redis.aclose()

    # --- figures ---------------------------------------------------------------------
    live = [d for d in dashboards.values() if d.athlete > dropped]
    per_socket_max = [_window_max([t for t, _, _ in d.boards]) for d in live]
    gaps_s = [b[0] - a[0] for d in live for a, b in itertools.pairwise(d.boards)]
    spans = [(d.boards[-1][0] - d.boards[0][0], len(d.boards)) for d in live if len(d.boards) > 1]
    latency = [wall - f["ingest_ms"] for d in live for _, wall, f in d.boards
               if isinstance(f.get("ingest_ms"), int) and "offset" in f]  # fmt: skip
    offline = sorted(last, key=lambda a: -last[a])
    final = coach.final
    final_order = (
        [r["athlete_id"] for r in sorted(final["rows"], key=lambda r: r["rank"] or 1e9)]
        if final
        else []
    )
    stored_order = [s["athlete_id"] for s in sorted(standings, key=lambda s: s["rank"] or 1e9)]
    return {
        "athletes": athletes,
        "dashboards": len(dashboards),
        "connected": connected,
        "posts": {str(k): v for k, v in posts.items()},
        "leaderboard_frames_per_socket": {
            "max_in_any_second": max(per_socket_max, default=0),
            "sockets_over_1_in_a_second": sum(1 for m in per_socket_max if m > 1),
            "min_gap_s": round(min(gaps_s), 3) if gaps_s else None,
            "mean_per_s": (
                round(statistics.mean((n - 1) / s for s, n in spans if s > 0), 3) if spans else None
            ),
        },
        "sample_to_leaderboard_ms": _pct(latency),
        "leaderboard_frame_bytes": _pct([float(n) for d in live for n in d.sizes]),
        # CPU of the edge process during the load, in cores (the machine has two).
        "edge_cpu_cores": round(edge_cpu, 2),
        "resume": {
            "dropped": dropped,
            "drop_s": drop_s,
            "checks": [
                {
                    **(d.resume_check or {}),
                    "after": d.after,
                    "errors": d.errors[:3],
                    "close": d.close_code,
                }
                for d in list(dashboards.values())[:dropped]
            ],
            "own_session": gaps,
        },
        "standings": {
            # The store app is not part of bench.e2e's stack: stored rows only if it ran.
            "stored": len(standings),
            "stored_match_offline": stored_order == [str(_uid(a)) for a in offline],
            "final_board_rows": len(final_order),
            "final_board_matches_offline": final_order == [str(_uid(a)) for a in offline],
            "dashboards_with_the_final_board": sum(1 for d in live if d.final is not None),
            "coach_frames_per_socket_max_in_any_second": _window_max(
                [t for t, _, _ in coach.boards]
            ),
            "coach_frame_bytes": _pct([float(n) for n in coach.sizes]),
        },
        "closes": {
            str(code): sum(1 for d in dashboards.values() if d.close_code == code)
            for code in {d.close_code for d in dashboards.values()}
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--athletes", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--drop", type=float, default=30.0)
    parser.add_argument("--dropped", type=int, default=10)
    args = parser.parse_args()
    duration = min(300.0, args.duration)
    settings = load_settings()
    result = uvloop.run(_run(settings, args.athletes, duration, min(args.drop, duration / 2),
                             min(args.dropped, args.athletes)))  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
