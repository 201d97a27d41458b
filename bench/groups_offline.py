"""A race's and a class's standings computed offline, straight from the raw samples
(numpy), written apart from the agents' code (agents/leaderboard.py,
agents/group_member.py) from docs/groups.md and DOMAIN.md, so that tests and the group
bench can check the live leaderboard against it.

Race: each athlete is given as the times and device odometer readings of its samples and
its session's start time. Distance is the odometer since the first sample; session
time is the sample time minus the start (no pauses here). A finish is where the
distance crosses the line, interpolated linearly between the two samples around it.

Class (:func:`class_standings`): each athlete as the times, powers, speeds and heart
rates of its samples (NaN: not measured). The shared plan's intervals (durations only
here) run on the class clock from its start; a sample at or after the class start, before
the plan's end, counts the time since the session's sample before it (the first
sample: 1 s; at most 10 s) as targeted when its interval has a target, and as in target
when its value of the interval's first target (power, else pace = 1000 / speed s/km,
else heart rate) is within the range, ends included. NP is DOMAIN.md's as
docs/metrics.md pins it down (a 30-sample rolling mean of power with partial windows at
the start, 4th power, mean over the samples, 4th root; a sample without power is 0 W);
W/kg the mean power of the last 3 s over the weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Track:
    athlete_id: str
    start_s: float
    t: np.ndarray
    odometer_m: np.ndarray


def _time_at(elapsed: np.ndarray, distance: np.ndarray, target_m: float) -> float:
    """The first session time at which ``distance`` reached ``target_m``."""
    i = int(np.searchsorted(distance, target_m, side="left"))
    if i >= len(distance):
        return float(elapsed[-1])
    if i == 0:
        # From 0 m at 0 s to the first sample.
        d1, e1 = float(distance[0]), float(elapsed[0])
        return e1 * target_m / d1 if d1 > 0 else e1
    d0, d1 = float(distance[i - 1]), float(distance[i])
    e0, e1 = float(elapsed[i - 1]), float(elapsed[i])
    return e1 if d1 <= d0 else e0 + (e1 - e0) * (target_m - d0) / (d1 - d0)


def race_standings(
    tracks: list[Track], *, at_s: float | None = None, finish_m: float | None = None
) -> list[dict[str, Any]]:
    """Rank, distance, gaps and finish of every athlete with a sample at or before
    ``at_s`` (all samples when None), as the leaderboard publishes them (rounded)."""
    found: list[tuple[str, float, float, float | None]] = []  # athlete, m, s, finish s
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for track in tracks:
        keep = track.t <= at_s if at_s is not None else np.ones(len(track.t), dtype=bool)
        if not keep.any():
            continue
        t = track.t[keep]
        distance = np.maximum.accumulate(track.odometer_m[keep] - track.odometer_m[keep][0])
        elapsed = t - track.start_s
        series[track.athlete_id] = (elapsed, distance)
        finish = None
        if finish_m is not None and distance[-1] >= finish_m:
            finish = round(_time_at(elapsed, distance, finish_m), 1)
        metres = round(float(distance[-1]) if finish_m is None or finish is None else finish_m, 1)
        found.append((track.athlete_id, metres, round(float(elapsed[-1]), 1), finish))
    # Finished first by finish time, then by distance; ties by athlete id.
    found.sort(key=lambda f: (0, f[3], f[0]) if f[3] is not None else (1, -f[1], f[0]))
    rows: list[dict[str, Any]] = []
    for i, (athlete, metres, elapsed_s, finish) in enumerate(found):
        tie = (finish, None if finish is not None else metres)
        previous = found[i - 1] if i else None
        same = previous is not None and tie == (
            previous[3],
            None if previous[3] is not None else previous[1],
        )
        rank = rows[-1]["rank"] if same else i + 1
        rows.append({"athlete_id": athlete, "distance_m": metres, "elapsed_s": elapsed_s,
                     "finish_s": finish, "rank": rank})  # fmt: skip
    if rows:
        leader = rows[0]
        elapsed, distance = series[leader["athlete_id"]]
        for row in rows:
            row["gap_m"] = round(max(0.0, leader["distance_m"] - row["distance_m"]), 1)
            if row["finish_s"] is not None and leader["finish_s"] is not None:
                row["gap_s"] = round(row["finish_s"] - leader["finish_s"], 1)
            else:
                reached = _time_at(elapsed, distance, row["distance_m"])
                row["gap_s"] = round(row["elapsed_s"] - reached, 1)
    return rows


# --- a class ----------------------------------------------------------------------------

#: Longest time one sample counts for (docs/groups.md, "Class").
MAX_SAMPLE_DT_S = 10.0


@dataclass(frozen=True)
class Rider:
    athlete_id: str
    t: np.ndarray
    power_w: np.ndarray
    speed_m_s: np.ndarray
    heart_rate: np.ndarray
    weight_kg: float | None = None


def _first_target(interval: dict[str, Any]) -> tuple[str, float, float] | None:
    for name in ("power_w", "pace_s_per_km", "heart_rate_bpm"):
        target = interval.get(name)
        if target is not None:
            return name, float(target["low"]), float(target["high"])
    return None


def _np_w(power: np.ndarray) -> float | None:
    if np.isnan(power).all():
        return None
    watts = np.nan_to_num(power, nan=0.0)  # a sample without power: 0 W
    rolling = np.array([watts[max(0, i - 29) : i + 1].mean() for i in range(len(watts))])
    return float(np.mean(rolling**4) ** 0.25)


def class_figures(rider: Rider, plan: dict[str, Any], class_start_s: float) -> dict[str, Any]:
    """One rider's ``pct_target``, ``time_in_zone_s`` and ``np_w``, unrounded."""
    intervals = plan["intervals"]
    ends = class_start_s + np.cumsum([float(iv["duration_s"]) for iv in intervals])
    targeted = in_target = 0.0
    for i, t in enumerate(rider.t):
        dt = 1.0 if i == 0 else min(max(float(t - rider.t[i - 1]), 0.0), MAX_SAMPLE_DT_S)
        if t < class_start_s or t >= ends[-1]:
            continue
        target = _first_target(intervals[int(np.searchsorted(ends, t, side="right"))])
        if target is None:
            continue
        name, low, high = target
        if name == "power_w":
            value = float(rider.power_w[i])
        elif name == "pace_s_per_km":
            speed = float(rider.speed_m_s[i])
            value = 1000.0 / speed if speed > 0 else math.nan
        else:
            value = float(rider.heart_rate[i])
        targeted += dt
        if low <= value <= high:  # NaN (not measured) is never within
            in_target += dt
    # W/kg: the mean power of the last 3 s of samples over the weight.
    last = (rider.t > rider.t[-1] - 3.0) & ~np.isnan(rider.power_w)
    power_3s = float(rider.power_w[last].mean()) if last.any() else None
    return {
        "pct_target": 100.0 * in_target / targeted if targeted > 0 else None,
        "time_in_zone_s": in_target,
        "np_w": _np_w(rider.power_w),
        "w_per_kg": power_3s / rider.weight_kg if power_3s and rider.weight_kg else None,
    }


def class_standings(
    riders: Sequence[Rider], plan: dict[str, Any], class_start_s: float
) -> list[dict[str, Any]]:
    """Every rider's row as the leaderboard publishes it (figures rounded to 0.1): by
    ``pct_target``, then ``time_in_zone_s``, highest first; equal figures share a rank
    (1, 2, 2, 4), listed by athlete id; a rider with no targeted time unranked, last."""
    rows = []
    for rider in riders:
        figures = class_figures(rider, plan, class_start_s)
        pct = figures["pct_target"]
        rows.append({
            "athlete_id": rider.athlete_id,
            "pct_target": None if pct is None else round(pct, 1),
            "time_in_zone_s": round(figures["time_in_zone_s"], 1),
            "np_w": None if figures["np_w"] is None else round(figures["np_w"], 1),
            "w_per_kg": None if figures["w_per_kg"] is None else round(figures["w_per_kg"], 2),
        })  # fmt: skip
    ranked = sorted(
        (r for r in rows if r["pct_target"] is not None),
        key=lambda r: (-r["pct_target"], -r["time_in_zone_s"], r["athlete_id"]),
    )
    for i, row in enumerate(ranked):
        previous = ranked[i - 1] if i else None
        same = previous is not None and (previous["pct_target"], previous["time_in_zone_s"]) == (
            row["pct_target"], row["time_in_zone_s"])  # fmt: skip
        row["rank"] = previous["rank"] if same and previous is not None else i + 1
    unranked = sorted((r for r in rows if r["pct_target"] is None), key=lambda r: r["athlete_id"])
    for row in unranked:
        row["rank"] = None
    return ranked + unranked
