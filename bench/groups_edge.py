"""Issue 20's acceptance bench: one race of ``athletes`` posting at 1 Hz through the
real edge and live worker, watched by ``athletes`` dashboards (each its athlete's: the
group channel and its own session channel) and the coach's, all on this machine over
loopback. The dashboards are spread over ``client-procs`` processes (bench.board_clients)
so that reading them is not what is measured; this process posts the samples.

``python -m bench.groups_edge [--athletes 500] [--duration 60] [--drop 30] [--dropped 10]
[--client-procs N] [--profile edge.svg]``

Measured, from the dashboards' side:

- leaderboard frames per socket: the most in any one second (sliding), the smallest
  gap between two, and frames per second on average;
- sample-to-leaderboard latency at the socket: arrival minus the board's ``ingest_ms``
  (the newest sample acceptance time the board includes), live frames only, and its
  parts: ``emit_ms - ingest_ms`` (the agents') and arrival minus ``emit_ms``;
- ``dropped`` dashboards close for ``drop`` seconds mid-run and resume: the first
  board after the resume is full and not older than the board the agents had stored
  when the resume was sent; their own session channel has no gap (every entry of
  their session in the stream between the first and the last they got, got once);
- the final standings (the coach finishes the race): the stored ranks against an
  offline ranking of the same samples (distance covered, highest first);
- the client processes' own lag (how late a 20 ms sleep wakes) and CPU.

From the edge's side (its ``/metrics`` at the end): the gap between two frames of the
group written to one socket (how many at or under 0.95 s and under 1 s, the smallest),
and a board's hops on the edge (emitted to read from ``live``, held by the socket's
pacing, queued to written). ``--profile`` records the edge with py-spy meanwhile.

Bounded: ``duration`` at most 300 s, every wait has a timeout; the servers, worker,
edge and client processes are private children stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psycopg
import uvloop
from prometheus_client.parser import text_string_to_metric_families

from bench.board_clients import Clients, Spec, cpu_s
from bench.client import Poster, PostError
from bench.e2e import PARTITIONS, _pct, _seed, _stack, _uid, _wait_ready
from pipeline.constants import LIVE_TOPIC
from pipeline.records import session_key
from pipeline.settings import Settings, load_settings
from pipeline.transport.clients import redis_client
from pipeline.transport.streams import partition_for_key, read
from web.auth import mint_token
from web.observability import BOARD_HOPS

#: The edge's /metrics token in this bench's stack.
METRICS_TOKEN = "bench-groups-edge-metrics-token-0123456789"
#: Processes the dashboards are read by (docs/groups.md: with 1, 2 and 4 their loop lag
#: was alike, p99 8-18 ms; none is the bottleneck).
CLIENT_PROCS = 2
COACH = 100001


def speed_of(athlete: int) -> float:
    """Each athlete's steady speed (m/s): all different, so the ranking has no ties."""
    return 2.5 + athlete * 0.003


def _window_max(times: list[float], width_s: float = 1.0) -> int:
    """The most of ``times`` (sorted) within any ``width_s``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= width_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text: (sample name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _histogram(scraped: dict[Any, float], name: str, **labels: str) -> dict[str, Any]:
    """Count, mean and the bucket bounds holding p50 and p99 (ms) of one histogram."""
    fixed = tuple(sorted(labels.items()))
    count = scraped.get((f"{name}_count", fixed), 0.0)
    total = scraped.get((f"{name}_sum", fixed), 0.0)
    buckets = sorted(
        (float(dict(lbl)["le"]), v)
        for (n, lbl), v in scraped.items()
        if n == f"{name}_bucket" and {k: v for k, v in lbl if k != "le"} == labels
    )

    def bound(q: float) -> float | None:
        for le, cumulative in buckets:
            if cumulative >= q * count:
                return round(le * 1000, 1)
        return None

    out: dict[str, Any] = {"n": int(count)}
    if count:
        out.update(mean_ms=round(total / count * 1000, 1), p50_le_ms=bound(0.5),
                   p99_le_ms=bound(0.99))  # fmt: skip
    return out


def _hops(dashboards: list[dict[str, Any]], load_t0: float | None, part: str) -> dict[str, float]:
    """Percentiles of one part of the live frames' latency (ms): ``total`` (arrival -
    ingest_ms), ``agent`` (emit_ms - ingest_ms), ``after`` (arrival - emit_ms); with
    ``load_t0``, only boards of samples posted during the load, the final one left out."""
    values = []
    for d in dashboards:
        for ingest, emit, wall, final in d["live"]:
            if load_t0 is not None and (final or ingest < load_t0 * 1000):
                continue
            if part == "total":
                values.append(wall - ingest)
            elif emit is not None:
                values.append(float(emit - ingest if part == "agent" else wall - emit))
    return _pct(values)


async def _edge_metrics(base: str) -> dict[str, Any]:
    """The edge's own figures: the pacing (gap between two frames of the group written
    to one socket) and a board's hops on the edge."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as resp,
    ):
        scraped = _samples(await resp.text())
    gap = "livecoach_leaderboard_gap_seconds"
    return {
        "gaps": int(scraped.get((f"{gap}_count", (("final", "false"),)), 0)),
        "gaps_at_or_under_0_95_s": int(
            scraped.get((f"{gap}_bucket", (("final", "false"), ("le", "0.95"))), 0)
        ),
        "gaps_under_1_s": int(
            scraped.get((f"{gap}_bucket", (("final", "false"), ("le", "0.99"))), 0)
        ),
        "min_gap_s": round(scraped.get(("livecoach_leaderboard_gap_min_seconds", ()), -1), 3),
        "final_gaps": int(scraped.get((f"{gap}_count", (("final", "true"),)), 0)),
        "hops": {
            hop: _histogram(scraped, "livecoach_leaderboard_hop_seconds", hop=hop)
            for hop in BOARD_HOPS
        },
    }


async def _run(settings: Settings, athletes: int, duration_s: float, drop_s: float,
               dropped: int, client_procs: int, profile: str | None) -> dict[str, Any]:  # fmt: skip
    extra_env = {"LIVECOACH_METRICS_TOKEN": METRICS_TOKEN}
    with _stack(settings, workers=True, extra_env=extra_env) as stack:
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

            # The dashboards, in client processes: each athlete's (the group channel and
            # its own session), the first ``dropped`` of them drop and resume, and the
            # coach's (the whole board; members get their window).
            specs = [Spec(a, token(a, "athlete"), sid, drop=k < dropped)
                     for k, (a, sid) in enumerate(sorted(sessions.items()))]  # fmt: skip
            specs.append(Spec(COACH, token(COACH, "coach"), "", role="coach"))
            clients = Clients(base, gid, stack["redis_url"], specs, client_procs)
            try:
                connected = await clients.ready() - 1
                await asyncio.sleep(2.0)

                t0 = time.time() - duration_s - 5
                posts: dict[int | str, int] = {}
                last: dict[int, float] = {}
                posters = {a: Poster("127.0.0.1", port, f"/api/v1/live/sessions/{sid}/update",
                                     {"Authorization": f"Bearer {token(a, 'athlete')}"})
                           for a, sid in sessions.items()}  # fmt: skip
                await asyncio.gather(
                    *[p.connect() for p in posters.values()], return_exceptions=True
                )
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

                async def drop_and_resume() -> None:
                    await asyncio.sleep(duration_s / 4)
                    await clients.drop()
                    await asyncio.sleep(drop_s)
                    await clients.resume()

                spy = _py_spy(stack["edge_pid"], duration_s, profile) if profile else None
                cpu_before, wall_before = cpu_s(stack["edge_pid"]), time.monotonic()
                load_t0 = time.time()
                own_before = cpu_s(os.getpid())
                await asyncio.gather(*[device(a) for a in sessions], drop_and_resume())
                wall_s = time.monotonic() - wall_before
                edge_cpu = (cpu_s(stack["edge_pid"]) - cpu_before) / wall_s
                load_cpu = (cpu_s(os.getpid()) - own_before) / wall_s
                if spy is not None:
                    spy.wait(timeout=60)
                for p in posters.values():
                    p.close()
                await asyncio.sleep(3.0)
                await api(COACH, "coach", "POST", f"/groups/{gid}/finish")
                standings: list[dict[str, Any]] = []
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    standings = (await api(COACH, "coach", "GET", f"/groups/{gid}")).get(
                        "standings"
                    ) or []
                    if len(standings) >= athletes:
                        break
                    await asyncio.sleep(1.0)
                edge = await _edge_metrics(base)
                results = await clients.stop()
            finally:
                clients.kill()

            # Own-session gaps of the dropped dashboards, against the stream.
            redis = redis_client(stack["redis_url"])
            boards = [d for r in results for d in r["dashboards"]]
            gaps = {}
            for d in boards:
                if not d["drop"]:
                    continue
                key = session_key(sessions[d["athlete"]])
                partition = partition_for_key(key, PARTITIONS)
                entries = await read(redis, LIVE_TOPIC, partition, 0, count=1_000_000)
                got = sorted(o for _, o in d["own"])
                expected = [
                    offset
                    for offset, (k, _, _, _) in entries
                    if k == key and got and got[0] <= offset <= got[-1]
                ]
                gaps[d["athlete"]] = {"expected": len(expected), "got": len(got),
                                      "missing": len(set(expected) - set(got)),
                                      "twice": len(got) - len(set(got))}  # fmt: skip
            await redis.aclose()

    # --- figures ---------------------------------------------------------------------
    members = [d for d in boards if d["role"] == "athlete"]
    live = [d for d in members if not d["drop"]]
    coach = next(d for d in boards if d["role"] == "coach")
    per_socket_max = [_window_max(d["arrivals"]) for d in live]
    gaps_s = [b - a for d in live for a, b in itertools.pairwise(d["arrivals"])]
    spans = [(d["arrivals"][-1] - d["arrivals"][0], len(d["arrivals"]))
             for d in live if len(d["arrivals"]) > 1]  # fmt: skip
    offline = sorted(last, key=lambda a: -last[a])
    final_order = coach["final_order"] or []
    stored_order = [s["athlete_id"] for s in sorted(standings, key=lambda s: s["rank"] or 1e9)]
    return {
        "athletes": athletes,
        "dashboards": len(members),
        "connected": connected,
        "client_procs": client_procs,
        "posts": {str(k): v for k, v in posts.items()},
        "leaderboard_frames_per_socket": {
            "max_in_any_second": max(per_socket_max, default=0),
            "sockets_over_1_in_a_second": sum(1 for m in per_socket_max if m > 1),
            "min_gap_s": round(min(gaps_s), 3) if gaps_s else None,
            "gaps_under_1_s": sum(1 for g in gaps_s if g < 1.0),
            "gaps": len(gaps_s),
            "mean_per_s": (
                round(statistics.mean((n - 1) / s for s, n in spans if s > 0), 3) if spans else None
            ),
        },
        # The same, as the edge wrote the frames (its /metrics: every socket, the
        # dropped ones' too; the final board apart).
        "edge_pacing": {k: v for k, v in edge.items() if k != "hops"},
        # Live frames: arrival minus the board's ingest_ms (the newest sample acceptance
        # time it includes), and its two parts: the agent's (emit_ms - ingest_ms) and
        # from the agent's send to the client's arrival. "load": the boards of samples
        # posted during the load (not the first board, whose newest input is a session
        # start before it, nor the final one, published at the finish 3 s after the
        # last sample: 2 boards of 61, over 3% of the frames, 2.4-3.7 s each).
        "sample_to_leaderboard_ms": _hops(live, load_t0, "total"),
        "ingest_to_emit_ms": _hops(live, load_t0, "agent"),
        "emit_to_arrival_ms": _hops(live, load_t0, "after"),
        "all_live_frames": {
            "sample_to_leaderboard_ms": _hops(live, None, "total"),
            "ingest_to_emit_ms": _hops(live, None, "agent"),
        },
        # The edge's hops (per board read, then per frame written), from its histograms.
        "edge_hops": edge["hops"],
        # The client processes: how late their event loops woke (a 20 ms sleep), CPU.
        "clients": [
            {"cpu_cores": r["cpu_cores"], "lag_ms": r["lag_ms"], "closes": r["closes"]}
            for r in results
        ],
        "client_errors": sorted({e for d in boards for e in d["errors"]})[:10],
        # The edge pings every socket every 15 s and closes one silent for 45 s (4408):
        # the longest time between two pings a socket got, for the sockets it closed
        # and the others, and from the last ping to the close.
        "pings": {
            "closed_4408": _pct(
                [
                    d["ping_gap_max_s"]
                    for d in members
                    if d["close"] == 4408 and d["ping_gap_max_s"] is not None
                ]
            ),
            "last_ping_to_close_s": _pct(
                [
                    d["last_ping_to_close_s"]
                    for d in members
                    if d["close"] == 4408 and d["last_ping_to_close_s"] is not None
                ]
            ),
            "others": _pct(
                [
                    d["ping_gap_max_s"]
                    for d in members
                    if d["close"] != 4408 and d["ping_gap_max_s"] is not None
                ]
            ),
        },
        # The coach's boards with the longest way from sample to agent's send: seq, s
        # since the load started, emit_ms - ingest_ms, arrival - emit_ms (ms).
        "slowest_boards_at_the_agent": [
            (seq, round(wall / 1000 - load_t0, 1), emit - ingest, round(wall - emit))
            for seq, ingest, emit, wall in sorted(
                (x for x in coach["log"] if x[2] is not None), key=lambda x: x[1] - x[2]
            )[:3]
        ],
        "leaderboard_frame_bytes": _pct([float(n) for d in live for n in d["sizes"]]),
        # CPU of the edge process and of the load generator (this process) during the
        # load, in cores (the machine has two).
        "edge_cpu_cores": round(edge_cpu, 2),
        "load_cpu_cores": round(load_cpu, 2),
        "resume": {
            "dropped": dropped,
            "drop_s": drop_s,
            "checks": [
                {
                    **(d["resume_check"] or {}),
                    "after": d["after"],
                    "errors": d["errors"],
                    "close": d["close"],
                }
                for d in members
                if d["drop"]
            ],
            "own_session": gaps,
        },
        "standings": {
            # The store app is not part of bench.e2e's stack: stored rows only if it ran.
            "stored": len(standings),
            "stored_match_offline": stored_order == [str(_uid(a)) for a in offline],
            "final_board_rows": len(final_order),
            "final_board_matches_offline": final_order == [str(_uid(a)) for a in offline],
            "dashboards_with_the_final_board": sum(1 for d in live if d["final_order"]),
            "coach_frames_per_socket_max_in_any_second": _window_max(coach["arrivals"]),
            "coach_frame_bytes": _pct([float(n) for n in coach["sizes"]]),
        },
        "closes": {
            str(code): sum(1 for d in members if d["close"] == code)
            for code in {d["close"] for d in members}
        },
    }


def _py_spy(pid: int, duration_s: float, path: str) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of the edge during the load: a flame graph SVG at ``path``, or
    collapsed stacks (``--format raw``) if it ends with ``.txt``."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(int(duration_s)), "--rate", "100",
         "--nonblocking", "--output", path,
         *(["--format", "raw"] if path.endswith(".txt") else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--athletes", type=int, default=500)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--drop", type=float, default=30.0)
    parser.add_argument("--dropped", type=int, default=10)
    parser.add_argument("--client-procs", type=int, default=CLIENT_PROCS,
                        help="processes the dashboards are spread over")  # fmt: skip
    parser.add_argument("--profile", metavar="SVG|TXT",
                        help="py-spy profile of the edge during the load")  # fmt: skip
    args = parser.parse_args()
    duration = min(300.0, args.duration)
    settings = load_settings()
    result = uvloop.run(_run(settings, args.athletes, duration, min(args.drop, duration / 2),
                             min(args.dropped, args.athletes), max(1, min(16, args.client_procs)),
                             args.profile))  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
