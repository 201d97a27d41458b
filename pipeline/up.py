"""``livecoach up``: everything on one machine, with a demo athlete.

Starts (or reaches) Redis and PostgreSQL, migrates, runs the workers and one edge as
child processes, creates a demo athlete and coach (linked), prints the API address
and tokens, and then plays a workout for the athlete over the REST API: the labelled
generator's demo ride, or a recording named with ``--file``, in real time or faster
with ``--speed``. Ctrl-C (or SIGTERM) stops the demo, the children and the embedded
servers, in that order; children also die with us on a ``kill -9`` (parent-death
signal), so nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import aiohttp
import psycopg

from pipeline.embedded import die_with_parent, free_port
from pipeline.errors import LivecoachError
from pipeline.migrations import migrate
from pipeline.runtime import resolved_services
from pipeline.settings import Settings

DEMO_ATHLETE_EMAIL = "athlete@demo.livecoach"
DEMO_COACH_EMAIL = "coach@demo.livecoach"
#: Samples per request while playing faster than real time.
_MAX_BATCH = 50
_READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DemoUsers:
    athlete_id: UUID
    coach_id: UUID


def ensure_demo_users(database_url: str) -> DemoUsers:
    """The demo athlete and coach, linked; created once, found afterwards."""
    with psycopg.connect(database_url) as conn:
        ids: dict[str, UUID] = {}
        for email, name, role in (
            (DEMO_ATHLETE_EMAIL, "Demo Athlete", "athlete"),
            (DEMO_COACH_EMAIL, "Demo Coach", "coach"),
        ):
            row = conn.execute(
                "INSERT INTO users (email, name, role) VALUES (%s, %s, %s)"
                " ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (email, name, role),
            ).fetchone()
            assert row is not None
            ids[role] = row[0]
        conn.execute(
            "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (ids["coach"], ids["athlete"]),
        )
        conn.execute(
            "INSERT INTO athlete_profiles (user_id) VALUES (%s) ON CONFLICT DO NOTHING",
            (ids["athlete"],),
        )
    return DemoUsers(athlete_id=ids["athlete"], coach_id=ids["coach"])


@dataclass(frozen=True)
class DemoSample:
    offset_s: float
    fields: dict[str, float]


def demo_samples(file: Path | None) -> list[DemoSample]:
    """The workout to play: a recording, or the generator's demo ride."""
    if file is not None:
        from pipeline.recordings import read_recording

        recording = read_recording(file)
        t0 = recording.samples[0].t
        keep = ("heart_rate", "power_w", "speed_m_s", "cadence", "distance_m", "altitude_m")
        return [
            DemoSample(s.t - t0, {k: v for k in keep if (v := getattr(s, k)) is not None})
            for s in recording.samples
        ]
    from agents.workouts import demo_workout

    workout = demo_workout()
    out = []
    for s in workout.samples:
        fields = {
            "heart_rate": s.heart_rate_bpm,
            "power_w": s.power_w,
            "speed_m_s": s.speed_m_s,
        }
        out.append(DemoSample(s.t_s, {k: v for k, v in fields.items() if v is not None}))
    return out


async def play(
    base_url: str, token: str, samples: list[DemoSample], *, speed: float, stop: asyncio.Event
) -> str | None:
    """Start a session and post ``samples`` at ``speed`` times real time; stop it after."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base_url, headers=headers) as http:
        async with http.post("/api/v1/live/sessions/start", json={"sport": "ride"}) as resp:
            if resp.status != 201 and resp.status != 200:
                raise LivecoachError(f"demo: starting a session failed: {resp.status} "
                                     f"{await resp.text()}")  # fmt: skip
            session_id = str((await resp.json())["id"])
        print(f"demo athlete is in session {session_id}", flush=True)
        wall0 = time.time()
        i = 0
        while i < len(samples) and not stop.is_set():
            due = wall0 + samples[i].offset_s / speed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, due - time.time()))
            if stop.is_set():
                break
            batch = []
            while i < len(samples) and wall0 + samples[i].offset_s / speed <= time.time():
                s = samples[i]
                # Sample times keep the workout's own spacing (so the metrics are right)
                # even when it is played faster than real time.
                batch.append({"t": wall0 + s.offset_s, **s.fields})
                i += 1
                if len(batch) >= _MAX_BATCH:
                    break
            body = {"samples": [{"session_id": session_id, **b} for b in batch]}
            async with http.post(f"/api/v1/live/sessions/{session_id}/update", json=body) as resp:
                if resp.status != 202:
                    print(f"demo: update refused: {resp.status} {await resp.text()}", flush=True)
        async with http.post(f"/api/v1/live/sessions/{session_id}/stop", json={}) as resp:
            await resp.read()
        return session_id


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )


@contextlib.contextmanager
def _children(env: dict[str, str], host: str, port: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        _child(["worker", "--app", "all"], env),
        _child(["web", "--host", host, "--port", str(port)], env),
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _wait_ready(base_url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    async with aiohttp.ClientSession(base_url) as http:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise LivecoachError("a worker or the edge exited at start-up (see above)")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get("/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise LivecoachError(f"the edge was not ready within {_READY_TIMEOUT_S:.0f} s")


def run_up(
    settings: Settings, *, file: Path | None, speed: float, port: int | None, loop_demo: bool
) -> int:
    from web.auth import mint_token

    samples = demo_samples(file)
    host = settings.web_host
    port = port if port is not None else settings.web_port
    port = port or free_port(host)
    with resolved_services(settings) as urls:
        migrate(urls.database_url)
        users = ensure_demo_users(urls.database_url)
        env = {
            **os.environ,
            "LIVECOACH_REDIS_URL": urls.redis_url,
            "LIVECOACH_DATABASE_URL": urls.database_url,
            "LIVECOACH_JWT_SECRET": settings.jwt_secret_value(),
        }
        base_url = f"http://{host}:{port}"
        with _children(env, host, port) as procs:
            athlete = mint_token(settings, user_id=users.athlete_id, role="athlete", ttl_s=86_400)
            coach = mint_token(settings, user_id=users.coach_id, role="coach", ttl_s=86_400)
            return asyncio.run(
                _serve(base_url, procs, athlete, coach, users, samples, speed, loop_demo)
            )


async def _serve(
    base_url: str,
    procs: list[subprocess.Popen[bytes]],
    athlete: str,
    coach: str,
    users: DemoUsers,
    samples: list[DemoSample],
    speed: float,
    loop_demo: bool,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await _wait_ready(base_url, procs)
    print(
        f"\nlivecoach is up: {base_url}/api/v1/live  (OpenAPI: {base_url}/api/v1/openapi.json)\n"
        f"athlete {users.athlete_id} token: {athlete}\n"
        f"coach {users.coach_id} token:   {coach}\n"
        f"athlete dashboard: {base_url}/dashboard#token={athlete}\n"
        f"coach dashboard:   {base_url}/dashboard#token={coach}\n"
        f"watch the demo: livecoach watch --user {users.athlete_id} --token <coach token>\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    while not stop.is_set():
        await play(base_url, athlete, samples, speed=speed, stop=stop)
        if not loop_demo:
            break
    await stop.wait()
    return 0
