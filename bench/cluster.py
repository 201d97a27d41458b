"""``python -m bench.cluster``: the full live path on a Redis Cluster beside one Redis.

Each run measures two set-ups, one after the other (their order alternates from run
to run, so that neither always runs on a warmer machine):

- **single**: one private Redis (the distribution's redis-server);
- **cluster**: a Redis Cluster of 3 primaries with one replica each, made with
  ``redis-cli --cluster create`` on loopback (``tests/cluster/topologies.py``).

On each: a private PostgreSQL, three live workers (``livecoach worker --app live``, one
consumer group sharing the partitions) and two edges (``livecoach web``), all child
processes given only ``LIVECOACH_REDIS_URL``. ``athletes`` devices post one sample a
second over REST, half to each edge; each athlete's dashboard socket is on the *other*
edge, so every sample crosses from one edge through Redis, a worker and Redis again to
the other edge. Measured at the client, after ``warmup_s``: sample-to-socket latency
(arrival minus the ``ingest_ms`` the edge stamped when it accepted the sample), the
samples per second whose metrics reached a socket, and the posts by status.

Everything shares the machine's cores (six Redis servers for the cluster), so the
figures compare the two set-ups on the same machine and load; they are not capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import uvloop

from bench.client import Poster, PostError
from bench.e2e import PARTITIONS, _Load, _pct, _seed, _wait_ready, median_at
from bench.servers import private_postgres, private_redis
from pipeline.embedded import die_with_parent, free_port, stop_children
from pipeline.settings import Settings, load_settings
from tests.cluster.topologies import ClusterNodes

SETUPS = ("single", "cluster")


@contextlib.contextmanager
def _redis(kind: str) -> Iterator[str]:
    if kind == "single":
        with private_redis("livecoach-bench-cluster-") as url:
            yield url
        return
    nodes = ClusterNodes(primaries=3, replicas=1)
    try:
        yield nodes.url
    finally:
        nodes.stop()


@contextlib.contextmanager
def _processes(
    settings: Settings, redis_url: str, db_url: str, workers: int, edges: int
) -> Iterator[list[int]]:
    """``workers`` live workers and ``edges`` edges on that Redis; the edges' ports."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")},
        "LIVECOACH_REDIS_URL": redis_url,
        "LIVECOACH_DATABASE_URL": db_url,
        "LIVECOACH_SAMPLES_PARTITIONS": str(PARTITIONS),
        "LIVECOACH_LIVE_PARTITIONS": str(PARTITIONS),
        "LIVECOACH_LOG_LEVEL": "WARNING",
        "LIVECOACH_JWT_SECRET": settings.jwt_secret_value(),
    }
    ports = [free_port() for _ in range(edges)]
    commands = [["worker", "--app", "live"]] * workers
    commands += [["web", "--host", "127.0.0.1", "--port", str(port)] for port in ports]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for args in commands:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pipeline.cli", *args],
                    env={**env, "LIVECOACH_WORKER_WEB_PORT": str(free_port())},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=die_with_parent(signal.SIGTERM),
                )
            )
        yield ports
    finally:
        stop_children(procs)


async def _load(
    settings: Settings, ports: list[int], athletes: int, duration_s: int, warmup_s: float
) -> dict[str, Any]:
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    for base in bases:
        await _wait_ready(base)
    # Sockets on the edge each athlete does not post to (the _Load of ``bench e2e``
    # watches one edge: one per edge here).
    loads = [_Load(settings, base) for base in bases]
    sessions: dict[int, str] = {}
    posts: dict[int | str, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        for a in range(1, athletes + 1):
            edge = a % len(bases)
            async with http.post(
                bases[edge] + "/api/v1/live/sessions/start",
                json={},
                headers={"Authorization": f"Bearer {loads[edge].token(a, 'athlete')}"},
            ) as resp:
                sessions[a] = str((await resp.json())["id"])
        sockets = await asyncio.gather(
            *[
                loads[(a + 1) % len(bases)].socket(
                    http, a, "athlete", [f"live:session:{sessions[a]}"]
                )
                for a in sessions
            ]
        )
        listeners = [
            asyncio.create_task(loads[(a + 1) % len(bases)].listen(ws))
            for a, ws in zip(sessions, sockets, strict=True)
            if ws is not None
        ]
        posters = {
            a: Poster(
                "127.0.0.1",
                ports[a % len(ports)],
                f"/api/v1/live/sessions/{sessions[a]}/update",
                {"Authorization": f"Bearer {loads[0].token(a, 'athlete')}"},
            )
            for a in sessions
        }
        await asyncio.gather(*[p.connect() for p in posters.values()], return_exceptions=True)
        t0 = time.time() - duration_s - 5
        origin = time.monotonic() + 0.5
        measured_from_ms = (time.time() + 0.5 + warmup_s) * 1000
        phase = {a: (k % 1000) / 1000 for k, a in enumerate(sessions)}

        async def device(a: int, poster: Poster) -> None:
            try:
                for i in range(duration_s):
                    await asyncio.sleep(max(0.0, origin + phase[a] + i - time.monotonic()))
                    body = {"t": t0 + i, "heart_rate": 120 + i % 30, "power_w": 200}
                    try:
                        status: int | str = await poster.post(orjson.dumps(body))
                    except PostError:
                        status = "PostError"
                    posts[status] = posts.get(status, 0) + 1
            finally:
                poster.close()

        await asyncio.gather(*[device(a, posters[a]) for a in sessions])
        await asyncio.sleep(2.0)
        for task in listeners:
            task.cancel()
        for ws in sockets:
            if ws is not None:
                await ws.close()
    measured = [
        (ingest, lat) for load in loads for ingest, lat in load.latencies
        if ingest >= measured_from_ms
    ]  # fmt: skip
    span_s = (max(i for i, _ in measured) - min(i for i, _ in measured)) / 1000 if measured else 0
    return {
        "posts": {str(k): v for k, v in sorted(posts.items(), key=str)},
        "sample_to_socket_ms": _pct([lat for _, lat in measured]),
        "samples_per_s": round(len(measured) / span_s, 1) if span_s else 0.0,
        "connected": sum(load.connected for load in loads),
    }


def bench_cluster(
    settings: Settings,
    *,
    athletes: int = 300,
    duration_s: int = 30,
    warmup_s: float = 10.0,
    workers: int = 3,
    edges: int = 2,
    runs: int = 3,
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for run in range(runs):
        order = SETUPS if run % 2 == 0 else SETUPS[::-1]
        measured: dict[str, Any] = {}
        for kind in order:
            with (
                private_postgres("livecoach-bench-cluster-") as db_url,
                _redis(kind) as redis_url,
                _processes(settings, redis_url, db_url, workers, edges) as ports,
            ):
                _seed(db_url, athletes, 0, 0)
                measured[kind] = uvloop.run(_load(settings, ports, athletes, duration_s, warmup_s))
        results.append({"order": list(order), **measured})
        print(json.dumps(results[-1]), file=sys.stderr)

    def median(kind: str, *path: str) -> float | None:
        return median_at(results, kind, *path)

    return {
        "params": {
            "athletes": athletes,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "workers": workers,
            "edges": edges,
            "runs": runs,
            "partitions": PARTITIONS,
        },
        "median": {
            kind: {
                "p50_ms": median(kind, "sample_to_socket_ms", "p50"),
                "p99_ms": median(kind, "sample_to_socket_ms", "p99"),
                "samples_per_s": median(kind, "samples_per_s"),
            }
            for kind in SETUPS
        },
        "runs": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=300)
    parser.add_argument("--duration", type=int, default=30, help="seconds of posting")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds not measured")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings(jwt_secret="bench-cluster-secret-0123456789abcdef")
    result = bench_cluster(
        settings,
        athletes=args.athletes,
        duration_s=args.duration,
        warmup_s=args.warmup,
        runs=args.runs,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
