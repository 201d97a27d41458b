"""Replay jobs over REST: start, poll, fetch the result, cancel.

``POST /replays`` validates the request, checks that the caller may see what it
names (a session as every session endpoint does: 404 for one they may not see; an
athlete: 403), and queues a job; the edge that accepted it runs ``livecoach replay``
as a child process (a replay runs a Faust app, which needs an event loop of its own,
and a crash or a kill must not touch the edge) and stores its report.

Jobs live in Redis (:data:`~pipeline.constants.REPLAY_JOB_KEY`, a hash: ``job`` the
status document, ``result`` the report, ``cancel`` a request to stop), so any edge
answers a poll and takes a cancel; the running edge checks for a cancel every
:data:`POLL_S` and kills the child. Bounds: :attr:`JobLimits.per_user` queued or
running jobs per user (429 beyond), :attr:`JobLimits.per_edge` children at once per
edge (others wait, queued), :attr:`JobLimits.timeout_s` per job. A finished job
(``done``, ``failed`` or ``cancelled``) and its result are kept
:attr:`JobLimits.keep_s` (an hour), then expire. Jobs still running when their edge
stops are marked ``failed`` ("the edge stopped").
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import redis.asyncio as aioredis
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.alerts.config import AlertConfig
from pipeline.constants import REPLAY_ACTIVE_KEY, REPLAY_JOB_KEY
from pipeline.models import AthleteProfile
from pipeline.settings import Settings
from web.endpoints import (
    PREFIX,
    Endpoint,
    Param,
    edge_of,
    json_response,
    principal,
    read_body,
    uuid_path,
)  # fmt: skip
from web.problems import Problem, validation_errors

log = logging.getLogger(__name__)

#: How often a running job looks for a cancel request (s).
POLL_S = 0.5
#: Statuses of a job that is over.
FINISHED = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobLimits:
    per_user: int = 2
    per_edge: int = 2
    timeout_s: float = 900.0
    keep_s: int = 3600


class WhatIf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Athlete profile fields over the recorded profile (hr_max, lthr, ftp_w, ...).
    profile: dict[str, Any] = Field(default_factory=dict)
    #: Alert settings merged over the recorded ones (as PUT .../thresholds takes them).
    alerts: dict[str, Any] | None = None


class ReplayJobIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    session_id: UUID | None = None
    user_id: UUID | None = None
    since: dt.datetime | None = Field(default=None, alias="from")
    until: dt.datetime | None = Field(default=None, alias="to")
    source: Literal["database", "stream"] = "database"
    from_offset: int | None = Field(default=None, ge=0)
    speed: float | None = Field(default=None, gt=0, le=1_000_000)
    what_if: WhatIf | None = None


@dataclass
class ReplayJobs:
    """The jobs this edge runs, and how to run them."""

    settings: Settings
    redis_url: str
    database_url: str
    limits: JobLimits = field(default_factory=JobLimits)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.limits.per_edge)

    def argv(self, body: ReplayJobIn) -> list[str]:
        args = [sys.executable, "-m", "pipeline.cli", "replay", "--json", "--source", body.source]
        if body.session_id is not None:
            args.append(str(body.session_id))
        if body.user_id is not None:
            args += ["--user", str(body.user_id)]
        for flag, when in (("--since", body.since), ("--until", body.until)):
            if when is not None:
                args += [flag, _utc(when).isoformat()]
        if body.from_offset is not None:
            args += ["--from-offset", str(body.from_offset)]
        if body.speed is not None:
            args += ["--speed", repr(body.speed)]
        if body.what_if is not None:
            args += ["--what-if", "-"]
        return args

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_")}
        env |= {
            "LIVECOACH_REDIS_URL": self.redis_url,
            "LIVECOACH_DATABASE_URL": self.database_url,
            "LIVECOACH_DATA_DIR": str(self.settings.data_dir),
            "LIVECOACH_LOG_LEVEL": "WARNING",
        }
        return env

    async def run(self, redis: aioredis.Redis, job: dict[str, Any], body: ReplayJobIn) -> None:
        key = REPLAY_JOB_KEY.format(job_id=job["id"])
        try:
            async with self.slots:
                if await redis.hexists(key, "cancel"):
                    return await _finish(redis, job, "cancelled", self.limits)
                job |= {"status": "running", "started_at": _now()}
                await _save(redis, job, self.limits.keep_s + int(self.limits.timeout_s))
                stdin = json.dumps(_what_if_file(body.what_if)).encode() if body.what_if else b""
                await self._child(redis, key, job, body, stdin)
        except asyncio.CancelledError:
            job["error"] = "the edge stopped"
            with contextlib.suppress(Exception):
                await asyncio.shield(_finish(redis, job, "failed", self.limits))
            raise
        finally:
            self.tasks.pop(job["id"], None)

    async def _child(
        self, redis: aioredis.Redis, key: str, job: dict[str, Any], body: ReplayJobIn, stdin: bytes
    ) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(body), env=self.env(), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        talk = asyncio.ensure_future(proc.communicate(stdin))
        deadline = time.monotonic() + self.limits.timeout_s
        outcome: tuple[str, str | None] | None = None
        try:
            while not talk.done():
                await asyncio.wait({talk}, timeout=POLL_S)
                if talk.done():
                    break
                if await redis.hexists(key, "cancel"):
                    outcome = ("cancelled", None)
                elif time.monotonic() > deadline:
                    outcome = ("failed", f"took longer than {self.limits.timeout_s:.0f} s")
                if outcome is not None:
                    proc.kill()
                    break
            out, err = await talk
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if outcome is not None:
            job["error"] = outcome[1]
            return await _finish(redis, job, outcome[0], self.limits)
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            job["error"] = lines[-1] if lines else f"exit status {proc.returncode}"
            return await _finish(redis, job, "failed", self.limits)
        await _finish(redis, job, "done", self.limits, result=out)


def _utc(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _what_if_file(what_if: WhatIf | None) -> dict[str, Any]:
    """The ``--what-if`` JSON document: profile fields, plus ``alerts``."""
    if what_if is None:
        return {}
    data = dict(what_if.profile)
    if what_if.alerts is not None:
        data["alerts"] = what_if.alerts
    return data


async def _save(redis: aioredis.Redis, job: dict[str, Any], ttl_s: int) -> None:
    key = REPLAY_JOB_KEY.format(job_id=job["id"])
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, "job", json.dumps(job))
        pipe.expire(key, ttl_s)
        await pipe.execute()


async def _finish(
    redis: aioredis.Redis,
    job: dict[str, Any],
    status: str,
    limits: JobLimits,
    result: bytes | None = None,
) -> None:
    job |= {"status": status, "finished_at": _now()}
    key = REPLAY_JOB_KEY.format(job_id=job["id"])
    # Not a transaction: the job and the user's active set are in different Cluster
    # slots. A reader between the two sees a finished job still counted as active.
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, "job", json.dumps(job))
        if result is not None:
            pipe.hset(key, "result", result)
        pipe.expire(key, limits.keep_s)
        pipe.srem(REPLAY_ACTIVE_KEY.format(user_id=job["user_id"]), job["id"])
        await pipe.execute()


REPLAY_JOBS = web.AppKey("replay_jobs", ReplayJobs)


def _validate_what_if(what_if: WhatIf | None) -> None:
    if what_if is None:
        return
    try:
        AthleteProfile.model_validate(what_if.profile)
    except ValidationError as exc:
        raise _unprocessable(validation_errors(exc, ("what_if", "profile"))) from None
    if what_if.alerts is not None:
        try:
            AlertConfig.model_validate(what_if.alerts)
        except ValidationError as exc:
            raise _unprocessable(validation_errors(exc, ("what_if", "alerts"))) from None


def _unprocessable(errors: list[dict[str, Any]]) -> Problem:
    first = errors[0]
    return Problem(
        422, "Unprocessable Content", f"{first['field']}: {first['message']}", errors=errors
    )


async def start_replay(request: web.Request) -> web.Response:
    who = await principal(request)
    edge = edge_of(request)
    body: ReplayJobIn = await read_body(request, ReplayJobIn)
    if body.session_id is None and body.user_id is None and who.role != "admin":
        message = "name a session_id or a user_id (every session: admins only)"
        raise _unprocessable([{"field": "session_id", "message": message}])
    if body.since is not None and body.until is not None and body.until <= body.since:
        raise _unprocessable([{"field": "to", "message": "must be after 'from'"}])
    _validate_what_if(body.what_if)
    if body.session_id is not None:
        await edge.need_access().require_session(who, body.session_id)
    if body.user_id is not None:
        await edge.need_access().require_athlete(who, body.user_id)
    jobs = request.app[REPLAY_JOBS]
    redis = edge.need_redis()
    job_id = str(uuid.uuid4())
    active = REPLAY_ACTIVE_KEY.format(user_id=who.user_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(active, job_id)
        pipe.expire(active, jobs.limits.keep_s + int(jobs.limits.timeout_s))
        pipe.scard(active)
        _, _, count = await pipe.execute()
    if count > jobs.limits.per_user:
        await redis.srem(active, job_id)
        raise Problem(
            429,
            "Too Many Requests",
            f"at most {jobs.limits.per_user} replay jobs at once per user; "
            "wait for one to finish or cancel it",
            headers={"Retry-After": "5"},
        )
    job: dict[str, Any] = {
        "id": job_id,
        "user_id": str(who.user_id),
        "status": "queued",
        "created_at": _now(),
        "started_at": None,
        "finished_at": None,
        "error": None,
        "request": body.model_dump(mode="json", by_alias=True, exclude_none=True),
        "keep_s": jobs.limits.keep_s,
    }
    await _save(redis, job, jobs.limits.keep_s + int(jobs.limits.timeout_s))
    jobs.tasks[job_id] = asyncio.create_task(jobs.run(redis, job, body), name=f"replay-{job_id}")
    response = json_response(job, status=202)
    response.headers["Location"] = f"{PREFIX}/replays/{job_id}"
    return response


async def _job_of(request: web.Request) -> tuple[str, dict[str, Any], aioredis.Redis]:
    """The caller's job named in the path (someone else's: 404, as if there were none)."""
    who = await principal(request)
    job_id = uuid_path(request, "id")
    redis = edge_of(request).need_redis()
    key = REPLAY_JOB_KEY.format(job_id=job_id)
    raw = await redis.hget(key, "job")
    job = json.loads(raw) if raw else None
    if job is None or job["user_id"] != str(who.user_id):
        raise Problem(404, "Not Found", f"no replay job {job_id}")
    return key, job, redis


async def get_replay(request: web.Request) -> web.Response:
    key, job, redis = await _job_of(request)
    if job["status"] not in FINISHED and await redis.hexists(key, "cancel"):
        job["status"] = "cancelling"
    return json_response(job)


async def get_replay_result(request: web.Request) -> web.Response:
    key, job, redis = await _job_of(request)
    if job["status"] != "done":
        detail = f"replay job {job['id']} is {job['status']}"
        if job.get("error"):
            detail += f": {job['error']}"
        raise Problem(409, "Conflict", detail)
    result = await redis.hget(key, "result")
    return web.Response(body=result, content_type="application/json")


async def cancel_replay(request: web.Request) -> web.Response:
    """Cancel a queued or running job (202); forget a finished one (204)."""
    key, job, redis = await _job_of(request)
    if job["status"] in FINISHED:
        await redis.delete(key)
        return web.Response(status=204)
    await redis.hset(key, "cancel", "1")
    return json_response({**job, "status": "cancelling"}, status=202)


_ID = Param("id", "path", {"type": "string", "format": "uuid"}, "replay job id", True)

REPLAY_ENDPOINTS = (
    Endpoint("POST", "/replays", start_replay,
             "Start a replay job (a session, or an athlete's sessions in a range; what-if)",
             202, ReplayJobIn, None, (), (400, 401, 403, 404, 422, 429)),
    Endpoint("GET", "/replays/{id}", get_replay, "A replay job's status", 200, None, None,
             (_ID,), (401, 404, 422)),
    Endpoint("GET", "/replays/{id}/result", get_replay_result,
             "A finished replay job's report (409 until it is done)", 200, None, None,
             (_ID,), (401, 404, 409, 422)),
    Endpoint("DELETE", "/replays/{id}", cancel_replay,
             "Cancel a replay job (202), or forget a finished one (204)", 202, None, None,
             (_ID,), (401, 404, 422)),
)  # fmt: skip


def add_replay_routes(
    app: web.Application,
    settings: Settings,
    *,
    redis_url: str,
    database_url: str,
    limits: JobLimits | None = None,
) -> None:
    jobs = ReplayJobs(settings, redis_url, database_url, limits or JobLimits())
    app[REPLAY_JOBS] = jobs

    async def running(app: web.Application) -> AsyncIterator[None]:
        yield
        tasks = list(jobs.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    app.cleanup_ctx.append(running)
    for ep in REPLAY_ENDPOINTS:
        app.router.add_route(ep.method, PREFIX + ep.path, ep.handler)
