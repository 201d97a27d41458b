"""A session's membership of a group, as the live agent keeps it: what it sends the
leaderboard (one :class:`~pipeline.records.GroupInputRecord` per record of the session).

The session state's ``group`` (None outside a group) holds the group (its
``payload.group``, docs/groups.md) and what the leaderboard ranks by that the session
metrics do not hold:

- a race's ``finish_s``: the session time at which the distance reached the group's
  ``distance_m``, interpolated between the two samples around it;
- a class's target figures, over the group's shared plan (the session's own plan when
  the group has none): each accepted sample counts its time (since the sample before,
  at most :data:`MAX_SAMPLE_DT_S`; 1 s for the first) as *targeted* when the plan's
  current interval has a target, and as *in target* when the sample's power (else
  pace from its speed, else heart rate: the interval's first target) is within it.
  The plan runs on the class clock, from the group's ``starts_at_ms`` (samples before
  it are a warm-up and not counted), or from the member's first sample without one;
- the alerts raised in the last :data:`ALERTS_OPEN_S` of sample time;
- the track: a ``[elapsed_s, distance_m]`` point every :data:`TRACK_STEP_S` of session
  time, sent with the next input (the leaderboard keeps them for ``gap_s``).
"""

from __future__ import annotations

import logging
from typing import Any

from agents.alerts.plan import PlanError, advance, parse_plan, plan_rows
from agents.session_metrics import SessionMetrics

log = logging.getLogger(__name__)

#: Longest time one sample counts for in the class figures (as in the session metrics).
MAX_SAMPLE_DT_S = 10.0
#: An alert counts as open for this long (sample time) after it was raised.
ALERTS_OPEN_S = 60.0
#: A track point (``[elapsed_s, distance_m]``) at most this often, in session time:
#: chosen by sample time, so a replay in larger batches sends the same points.
TRACK_STEP_S = 5.0

Member = dict[str, Any]

_STATUS = {"created": "active", "running": "active", "paused": "paused", "stopped": "stopped"}


def join(
    group: dict[str, Any], metrics: SessionMetrics, own_plan: dict[str, Any] | None
) -> Member:
    """The membership of a session that joins ``group`` (``own_plan``: the alert state's
    plan, the session's own, used by a class without a plan of its own)."""
    rows = None
    if group.get("kind") == "class":
        document = group.get("plan")
        if document is not None:
            try:
                rows = plan_rows(parse_plan(document, metrics.profile.ftp_w))
            except PlanError as exc:
                log.warning("group %s: ignoring an invalid plan: %s", group.get("id"), exc)
        elif own_plan is not None:
            rows = own_plan["rows"]
    starts_at_ms = group.get("starts_at_ms")
    return {
        "g": group,
        "rows": rows,
        # [interval index, its start t, its start distance]: agents.alerts.plan.advance
        "cur": [0, starts_at_ms / 1000.0 if isinstance(starts_at_ms, int | float) else None, 0.0],
        "tgt_s": 0.0,
        "in_s": 0.0,
        "fin": None,
        "prev": None,  # [elapsed_s, distance_m] after the last sample
        "alerts": [],
        "track": [],  # points not sent yet
        "track_e": None,  # elapsed_s of the last point
    }


def on_sample(member: Member, metrics: SessionMetrics, raw: dict[str, Any], dt_s: float) -> None:
    """Count one accepted sample (``metrics`` already includes it)."""
    elapsed = metrics.duration_s
    distance = metrics.totals.distance_m
    finish_m = member["g"].get("distance_m")
    if member["fin"] is None and isinstance(finish_m, int | float) and distance >= finish_m:
        prev = member["prev"]
        if prev is None or distance <= prev[1]:
            member["fin"] = elapsed
        else:
            share = (finish_m - prev[1]) / (distance - prev[1])
            member["fin"] = prev[0] + share * (elapsed - prev[0])
    member["prev"] = [elapsed, distance]
    if member["track_e"] is None or elapsed - member["track_e"] >= TRACK_STEP_S:
        member["track"].append([round(elapsed, 1), round(distance, 1)])
        member["track_e"] = elapsed
    rows = member["rows"]
    if rows is None:
        return
    t = float(raw["t"])
    cur = member["cur"]
    if cur[1] is None:
        cur[1] = t
        cur[2] = distance
    if t < cur[1]:
        return  # before the class started
    advance(cur, rows, t, distance)
    if cur[0] >= len(rows):
        return
    row = rows[cur[0]]
    value: float | None
    if row[2] is not None:
        value, low, high = raw.get("power_w"), row[2], row[3]
    elif row[4] is not None:
        speed = raw.get("speed_m_s")
        value, low, high = (1000.0 / speed if speed else None), row[4], row[5]
    elif row[6] is not None:
        value, low, high = raw.get("heart_rate"), row[6], row[7]
    else:
        return
    dt = min(max(dt_s, 0.0), MAX_SAMPLE_DT_S)
    member["tgt_s"] += dt
    if value is not None and low <= value <= high:
        member["in_s"] += dt


def on_alert(member: Member, t: float) -> None:
    member["alerts"].append(t)


def input_record(
    member: Member,
    metrics: SessionMetrics,
    *,
    session_id: str,
    athlete_id: str,
    ingest_ms: int,
    weight_kg: float | None,
    status: str | None = None,
) -> dict[str, Any]:
    """The member's :class:`~pipeline.records.GroupInputRecord` (JSON) as of now."""
    last_t = metrics.last_t
    alerts = member["alerts"]
    if last_t is not None:
        alerts[:] = [t for t in alerts if t > last_t - ALERTS_OPEN_S]
    has_plan = member["rows"] is not None
    tgt_s = member["tgt_s"]
    power_3s = metrics.power_window.mean() if metrics.power_seen else None
    return {
        "kind": "input",
        "group_id": str(member["g"]["id"]),
        "session_id": session_id,
        "athlete_id": athlete_id,
        "ingest_ms": ingest_ms,
        "status": status or _STATUS.get(metrics.state, "active"),
        "group_kind": "class" if member["g"].get("kind") == "class" else "race",
        "race_distance_m": member["g"].get("distance_m"),
        "t": last_t,
        "samples": metrics.totals.samples,
        "distance_m": metrics.totals.distance_m,
        "elapsed_s": metrics.duration_s,
        "moving_s": metrics.totals.moving_s,
        "finish_s": member["fin"],
        "pct_target": 100.0 * member["in_s"] / tgt_s if has_plan and tgt_s > 0 else None,
        "time_in_zone_s": member["in_s"] if has_plan else None,
        "np_w": metrics.normalized_power,
        "w_per_kg": power_3s / weight_kg if power_3s is not None and weight_kg else None,
        "alerts_open": len(alerts),
        "track": _take(member["track"]),
    }


def _take(points: list[list[float]]) -> list[list[float]]:
    taken = list(points)
    points.clear()
    return taken
