"""Replay jobs over REST on a real edge: start, poll, result, cancel, bounds, access."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.ids import sid
from tests.stored_session import interval_samples, store_session
from tests.web.conftest import ATHLETE, COACH, OTHER_COACH, Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WHAT_IF = {"alerts": {"rules": {"heart_rate": {"high_bpm": 140, "dwell_s": 3, "window_s": 10}}}}


async def _call(
    edge: Running, method: str, path: str, who: tuple[Any, str], body: Any = None
) -> tuple[int, Any]:
    async with edge.session.request(
        method, edge.url(f"/api/v1/live/{path}"), headers=edge.headers(*who), json=body
    ) as resp:
        data = await resp.json() if resp.content_type.endswith("json") else None
        return resp.status, data


async def _until(edge: Running, job_id: str, statuses: set[str], wait_s: float) -> Any:
    deadline = time.monotonic() + wait_s
    while True:
        status, job = await _call(edge, "GET", f"replays/{job_id}", (ATHLETE, "athlete"))
        assert status == 200, job
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.2)


@pytest.fixture
async def session_id(database_url: str) -> str:
    samples = interval_samples(sid(61), time.time() - 7200, duration_s=900)
    return await asyncio.to_thread(store_session, database_url, ATHLETE, samples)


async def test_a_what_if_job_runs_and_its_result_is_kept(edge: Running, session_id: str) -> None:
    athlete = (ATHLETE, "athlete")
    status, job = await _call(
        edge, "POST", "replays", athlete, {"session_id": session_id, "what_if": WHAT_IF}
    )
    assert status == 202 and job["status"] == "queued", job
    done = await _until(edge, job["id"], {"done", "failed"}, 90)
    assert done["status"] == "done", done
    status, report = await _call(edge, "GET", f"replays/{job['id']}/result", athlete)
    assert status == 200
    [entry] = report["sessions"]
    assert entry["session_id"] == session_id
    assert entry["replayed"]["summary"]["samples"] == 900
    # Nothing was raised live (the stored session has no alerts); 140 bpm raises some.
    assert entry["recorded"]["alerts"] == []
    assert entry["alerts_diff"]["gained"] and report["what_if"]["alerts"] == WHAT_IF["alerts"]
    # The job is its starter's: anyone else is told there is no such job.
    status, _ = await _call(edge, "GET", f"replays/{job['id']}", (COACH, "coach"))
    assert status == 404
    # A linked coach may replay the athlete's session; another coach may not see it.
    status, _ = await _call(edge, "POST", "replays", (OTHER_COACH, "coach"),
                            {"session_id": session_id})  # fmt: skip
    assert status == 404
    status, _ = await _call(edge, "DELETE", f"replays/{job['id']}", athlete)
    assert status == 204
    status, _ = await _call(edge, "GET", f"replays/{job['id']}", athlete)
    assert status == 404


async def test_jobs_are_bounded_per_user_and_cancellable(edge: Running, session_id: str) -> None:
    athlete = (ATHLETE, "athlete")
    slow = {"session_id": session_id, "speed": 1}  # real time: 15 min, unless cancelled
    ids = []
    for _ in range(2):
        status, job = await _call(edge, "POST", "replays", athlete, slow)
        assert status == 202, job
        ids.append(job["id"])
    status, problem = await _call(edge, "POST", "replays", athlete, slow)
    assert status == 429 and "at most 2" in problem["detail"]
    await _until(edge, ids[0], {"running"}, 30)
    status, _ = await _call(edge, "GET", f"replays/{ids[0]}/result", athlete)
    assert status == 409
    for job_id in ids:
        status, job = await _call(edge, "DELETE", f"replays/{job_id}", athlete)
        assert status == 202 and job["status"] == "cancelling"
    for job_id in ids:
        await _until(edge, job_id, {"cancelled"}, 15)
    status, job = await _call(edge, "POST", "replays", athlete, slow)  # room again
    assert status == 202
    await _call(edge, "DELETE", f"replays/{job['id']}", athlete)
    await _until(edge, job["id"], {"cancelled"}, 15)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "session_id"),
        ({"session_id": "not-a-uuid"}, "session_id"),
        ({"session_id": sid(61), "speed": -1}, "speed"),
        ({"session_id": sid(61), "source": "kafka"}, "source"),
        ({"session_id": sid(61), "colour": "red"}, "colour"),
        ({"session_id": sid(61), "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
         "to"),
        ({"session_id": sid(61), "what_if": {"profile": {"hr_max": 5}}}, "what_if.profile.hr_max"),
        ({"session_id": sid(61), "what_if": {"alerts": {"rules": {"heart_rate": {
            "high_bpm": "high"}}}}}, "what_if.alerts.rules.heart_rate.high_bpm"),
    ],
)  # fmt: skip
async def test_bad_requests_are_problems_naming_the_field(
    edge: Running, session_id: str, body: dict[str, Any], field: str
) -> None:
    status, problem = await _call(edge, "POST", "replays", (ATHLETE, "athlete"), body)
    assert status == 422, problem
    assert problem["errors"][0]["field"] == field, problem
    status, problem = await _call(edge, "GET", "replays/xyz", (ATHLETE, "athlete"))
    assert status == 422 and problem["errors"][0]["field"] == "id"


async def test_an_athletes_sessions_need_a_link(edge: Running, session_id: str) -> None:
    body = {"user_id": str(ATHLETE), "from": "2020-01-01T00:00:00Z"}
    status, problem = await _call(edge, "POST", "replays", (OTHER_COACH, "coach"), body)
    assert status == 403, problem
    status, job = await _call(edge, "POST", "replays", (COACH, "coach"), body)
    assert status == 202, job
    deadline = time.monotonic() + 90
    while job["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.2)
        status, job = await _call(edge, "GET", f"replays/{job['id']}", (COACH, "coach"))
    assert job["status"] == "done", job
    status, report = await _call(edge, "GET", f"replays/{job['id']}/result", (COACH, "coach"))
    assert [s["session_id"] for s in report["sessions"]] == [session_id]
