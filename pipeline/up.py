"""``livecoach up``: everything on one machine, with two demo athletes.

Starts (or reaches) Redis and PostgreSQL, migrates, runs the workers and one edge as
child processes, creates a demo coach and two athletes linked to them (a rider and a
runner, :mod:`pipeline.demo`: thresholds, alert bounds and a structured plan each),
prints the API address, tokens and dashboard links, and then plays both workouts over
the REST API at once (the rider's is a recording instead when ``--file`` names one),
in real time or faster with ``--speed``. Ctrl-C (or SIGTERM) stops the demo, the
children and the embedded servers, in that order; children also die with us on a
``kill -9`` (parent-death signal), so nothing is left running.

The terminal stays short: the children's output (Faust's start-up, the access log) and
our own log lines go to ``up.log`` in the data folder; the terminal shows one progress
line while the servers start, then the addresses and links, last. The links are also
written to ``links.txt`` there (mode 0600: they hold tokens) for ``livecoach links``,
and removed when ``up`` stops. A port already in use is one line and exit status 2,
before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import psycopg
from psycopg.types.json import Jsonb

from pipeline.demo import DemoAthlete, DemoSample, demo_athletes
from pipeline.embedded import check_port_free, die_with_parent, free_port, stop_children
from pipeline.errors import ConfigError, LivecoachError
from pipeline.migrations import migrate
from pipeline.redaction import redact_tokens
from pipeline.runtime import resolved_services
from pipeline.settings import Settings, env_name

log = logging.getLogger(__name__)

DEMO_COACH_EMAIL = "coach@demo.livecoach"
#: Samples per request while playing faster than real time.
_MAX_BATCH = 50
_READY_TIMEOUT_S = 60.0
#: Files ``up`` keeps in the data folder.
LOG_FILE = "up.log"
LINKS_FILE = "links.txt"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class DemoUsers:
    coach_id: UUID
    #: The demo athletes' ids, in the order of :func:`pipeline.demo.demo_athletes`.
    athlete_ids: tuple[UUID, ...]

    @property
    def athlete_id(self) -> UUID:
        return self.athlete_ids[0]


def ensure_demo_users(database_url: str, athletes: list[DemoAthlete]) -> DemoUsers:
    """The demo coach and athletes, linked, with their thresholds and alert bounds;
    created once, found (and their profiles reset) afterwards."""
    with psycopg.connect(database_url) as conn:

        def user(email: str, name: str, role: str) -> UUID:
            row = conn.execute(
                "INSERT INTO users (email, name, role) VALUES (%s, %s, %s)"
                " ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                (email, name, role),
            ).fetchone()
            assert row is not None
            return UUID(str(row[0]))

        coach = user(DEMO_COACH_EMAIL, "Demo Coach", "coach")
        ids = []
        for athlete in athletes:
            athlete_id = user(athlete.email, athlete.name, "athlete")
            ids.append(athlete_id)
            conn.execute(
                "INSERT INTO coach_athletes (coach_id, athlete_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (coach, athlete_id),
            )
            columns = dict(athlete.profile)
            columns["alert_settings"] = Jsonb(columns["alert_settings"])
            names = ", ".join(columns)
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
            conn.execute(
                f"INSERT INTO athlete_profiles (user_id, {names})"
                f" VALUES (%s{', %s' * len(columns)})"
                f" ON CONFLICT (user_id) DO UPDATE SET {updates}",
                (athlete_id, *columns.values()),
            )
    return DemoUsers(coach_id=coach, athlete_ids=tuple(ids))


def demo_samples(file: Path | None) -> list[DemoSample] | None:
    """A recording to play instead of the rider's generated ride (None: none given)."""
    if file is None:
        return None
    from pipeline.recordings import read_recording

    recording = read_recording(file)
    t0 = recording.samples[0].t
    keep = ("heart_rate", "power_w", "speed_m_s", "cadence", "distance_m", "altitude_m")
    return [
        DemoSample(s.t - t0, {k: v for k in keep if (v := getattr(s, k)) is not None})
        for s in recording.samples
    ]


async def play(
    base_url: str,
    token: str,
    samples: list[DemoSample],
    *,
    speed: float,
    stop: asyncio.Event,
    sport: str = "ride",
    plan: dict[str, Any] | None = None,
) -> str | None:
    """Start a session (with ``plan``) and post ``samples`` at ``speed`` times real
    time; stop it after."""
    headers = {"Authorization": f"Bearer {token}"}
    start: dict[str, Any] = {"sport": sport}
    if plan is not None:
        start["metadata"] = {"plan": plan}
    async with aiohttp.ClientSession(base_url, headers=headers) as http:
        async with http.post("/api/v1/live/sessions/start", json=start) as resp:
            if resp.status != 201 and resp.status != 200:
                raise LivecoachError(f"demo: starting a session failed: {resp.status} "
                                     f"{await resp.text()}")  # fmt: skip
            session_id = str((await resp.json())["id"])
        log.info("demo athlete is in session %s", session_id)
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
                    log.warning("demo: update refused: %s %s", resp.status, await resp.text())
        async with http.post(f"/api/v1/live/sessions/{session_id}/stop", json={}) as resp:
            await resp.read()
        return session_id


def links_path(settings: Settings) -> Path:
    """Where a running ``up`` keeps its addresses and links."""
    return settings.data_dir / LINKS_FILE


def log_path(settings: Settings) -> Path:
    """Where ``up`` and its children log."""
    return settings.data_dir / LOG_FILE


def read_links(settings: Settings) -> str:
    """The addresses and links of the ``up`` running on this data folder."""
    path = links_path(settings)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LivecoachError(
            f"no links in {path}: `livecoach up` is not running with this data folder "
            f"({env_name('data_dir')}={settings.data_dir})"
        ) from None


def _worker_port(settings: Settings) -> int:
    """The live worker's web port: the configured one, or a free one if it is taken."""
    variable = env_name("worker_web_port")
    try:
        check_port_free("127.0.0.1", settings.worker_web_port, variable)
    except ConfigError:
        if "worker_web_port" in settings.model_fields_set:
            raise  # asked for explicitly: say so rather than move it
        return free_port()
    return settings.worker_web_port


def _livecoach_command() -> str:
    """The command that runs livecoach, usable without an activated virtualenv."""
    script = Path(sys.executable).with_name("livecoach")
    if script.exists():
        return str(script)
    return f"{sys.executable} -m pipeline.cli"


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` anew, mode 0600 from its creation (it holds tokens)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Progress:
    """One line that grows while ``up`` starts: ``starting: servers, ... ready in 9.1 s``."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        print("livecoach up: starting", end="", flush=True)

    def step(self, what: str) -> None:
        print(f" · {what}", end="", flush=True)

    def done(self) -> None:
        print(f" · ready in {time.monotonic() - self.started:.1f} s", flush=True)

    def failed(self) -> None:
        print(" · failed", flush=True)


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Our log lines to ``path``; only warnings and errors still reach the terminal."""
    root = logging.getLogger()
    saved = root.handlers[:]
    # Private like the rest of the data folder (its lines are masked, but they name users).
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(_LOG_FORMAT))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setLevel(logging.WARNING)
    to_terminal.setFormatter(logging.Formatter("livecoach: %(levelname)s %(message)s"))
    root.handlers = [to_file, to_terminal]
    try:
        yield
    finally:
        root.handlers = saved
        to_file.close()


def _child(args: list[str], env: dict[str, str], output: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        preexec_fn=die_with_parent(signal.SIGTERM),
    )


@contextlib.contextmanager
def _children(
    env: dict[str, str], host: str, port: int, output: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        _child(["worker", "--app", "all"], env, output),
        _child(["web", "--host", host, "--port", str(port)], env, output),
    ]
    try:
        yield procs
    finally:
        stop_children(procs)


def _last_lines(path: Path, count: int = 3) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return redact_tokens(" | ".join(lines[-count:]))


def _check_alive(procs: list[subprocess.Popen[bytes]], logs: Path, when: str) -> None:
    for proc in procs:
        if proc.poll() is not None:
            what = "the edge" if proc is procs[-1] else "the worker"
            raise LivecoachError(
                f"{what} exited {when} (status {proc.returncode}); see {logs}: {_last_lines(logs)}"
            )


async def _wait_ready(
    ready_urls: list[str], procs: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    """Until every URL answers 200: the edge's /readyz and the live worker's own page."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    waiting = list(ready_urls)
    async with aiohttp.ClientSession() as http:
        while waiting and time.monotonic() < deadline:
            # Checked first: another edge on our port would answer /readyz for us.
            _check_alive(procs, logs, "at start-up")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(waiting[0]) as resp:
                    if resp.status == 200:
                        waiting.pop(0)
                        continue
            await asyncio.sleep(0.2)
    if waiting:
        raise LivecoachError(
            f"{waiting[0]} was not ready within {_READY_TIMEOUT_S:.0f} s; see {logs}"
        )


def format_links(base_url: str, users: DemoUsers, athletes: list[str], coach: str) -> str:
    """The addresses, tokens and dashboard links ``up`` prints (and keeps in a file)."""
    command = _livecoach_command()
    athlete = athletes[0]
    # The runner's link (the other demo athletes' are in `livecoach token`'s reach).
    others = "".join(f"runner dashboard:  {base_url}/dashboard#token={t}\n" for t in athletes[1:2])
    return (
        f"API:               {base_url}/api/v1/live  (OpenAPI: {base_url}/api/v1/openapi.json)\n"
        f"athlete {users.athlete_id} token: {athlete}\n"
        f"coach {users.coach_id} token:   {coach}\n"
        f"athlete dashboard: {base_url}/dashboard#token={athlete}\n"
        f"{others}"
        f"coach dashboard:   {base_url}/dashboard#token={coach}\n"
        f"watch the demo:    {command} watch --user {users.athlete_id} --url {base_url} "
        f"--token {coach}\n"
        f"print these again: {command} links\n"
    )


def _client_host(host: str) -> str:
    """An address to reach a listener on ``host`` with (not the wildcard itself)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def run_up(
    settings: Settings,
    *,
    file: Path | None,
    speed: float,
    port: int | None,
    loop_demo: bool,
    demo_count: int = 2,
) -> int:
    from web.auth import mint_token

    athletes = demo_athletes(demo_count)
    recording = demo_samples(file)
    if recording is not None:
        athletes[0] = replace(athletes[0], samples=recording, plan={})
    host = settings.web_host
    if port is not None:
        variable = "--port"
    else:
        variable, port = env_name("web_port"), settings.web_port
    if port:
        check_port_free(host, port, variable)
    else:
        port = free_port(host)
    worker_port = _worker_port(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logs = log_path(settings)
    links = links_path(settings)
    progress = Progress()
    with (
        _logging_to(logs),
        open(logs, "ab") as output,
        contextlib.ExitStack() as cleanup,
    ):
        try:
            progress.step("Redis and PostgreSQL")
            urls = cleanup.enter_context(resolved_services(settings))
            progress.step("migrations")
            migrate(urls.database_url)
            users = ensure_demo_users(urls.database_url, athletes)
            env = {
                **os.environ,
                "LIVECOACH_REDIS_URL": urls.redis_url,
                "LIVECOACH_DATABASE_URL": urls.database_url,
                "LIVECOACH_JWT_SECRET": settings.jwt_secret_value(),
                "LIVECOACH_WORKER_WEB_PORT": str(worker_port),
            }
            base_url = f"http://{_client_host(host)}:{port}"
            progress.step("workers and edge")
            procs = cleanup.enter_context(_children(env, host, port, output.fileno()))
            worker_url = f"http://127.0.0.1:{worker_port}/"  # Faust's page, after recovery
            asyncio.run(_wait_ready([f"{base_url}/readyz", worker_url], procs, logs))
        except BaseException:
            progress.failed()
            raise
        progress.done()
        tokens = [
            mint_token(settings, user_id=a, role="athlete", ttl_s=86_400) for a in users.athlete_ids
        ]
        coach = mint_token(settings, user_id=users.coach_id, role="coach", ttl_s=86_400)
        text = format_links(base_url, users, tokens, coach)
        _write_private(links, text)
        cleanup.callback(links.unlink, missing_ok=True)
        print(f"\nlivecoach is up (log: {logs})\n{text}Ctrl-C stops everything.", flush=True)
        players = list(zip(tokens, athletes, strict=True))
        return asyncio.run(_serve(base_url, players, speed, loop_demo, procs, logs))


async def _serve(
    base_url: str,
    players: list[tuple[str, DemoAthlete]],
    speed: float,
    loop_demo: bool,
    procs: list[subprocess.Popen[bytes]],
    logs: Path,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def one(token: str, athlete: DemoAthlete) -> None:
        try:
            while not stop.is_set():
                await play(
                    base_url, token, athlete.samples, speed=speed, stop=stop,
                    sport=athlete.sport, plan=athlete.plan or None,
                )  # fmt: skip
                if not loop_demo:
                    break
        except (aiohttp.ClientError, LivecoachError) as exc:
            log.warning("the demo athlete %s stopped: %s", athlete.name, exc)

    async def demo() -> None:
        await asyncio.gather(*(one(token, athlete) for token, athlete in players))

    async def watch_children() -> None:
        # A child that dies leaves links that no longer work: stop and say so.
        while not stop.is_set():
            _check_alive(procs, logs, "while running")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    demo_task = asyncio.create_task(demo())
    try:
        await watch_children()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await demo_task
    return 0
