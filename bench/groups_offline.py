"""A race's standings computed offline, straight from the raw samples (numpy), written
apart from the agents' code (agents/leaderboard.py, agents/group_member.py) so that
tests and the group bench can check the live leaderboard against it.

Each athlete is given as the times and device odometer readings of its samples and
its session's start time. Distance is the odometer since the first sample; session
time is the sample time minus the start (no pauses here). A finish is where the
distance crosses the line, interpolated linearly between the two samples around it.
"""

from __future__ import annotations

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
    rows = []
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
            finish = _time_at(elapsed, distance, finish_m)
        rows.append(
            {
                "athlete_id": track.athlete_id,
                "distance_m": round(float(distance[-1] if finish is None else finish_m), 1),
                "elapsed_s": round(float(elapsed[-1]), 1),
                "finish_s": None if finish is None else round(finish, 1),
            }
        )
    rows.sort(
        key=lambda r: (0, r["finish_s"], r["athlete_id"])
        if r["finish_s"] is not None
        else (1, -r["distance_m"], r["athlete_id"])
    )
    for i, row in enumerate(rows):
        previous = rows[i - 1] if i else None
        same = previous is not None and (
            (row["finish_s"], row["distance_m"] if row["finish_s"] is None else None)
            == (previous["finish_s"], previous["distance_m"] if previous["finish_s"] is None else None)
        )
        row["rank"] = previous["rank"] if same and previous is not None else i + 1
    if rows:
        leader = rows[0]
        elapsed, distance = series[leader["athlete_id"]]
        for row in rows:
            row["gap_m"] = round(max(0.0, leader["distance_m"] - row["distance_m"]), 1)
            if row["finish_s"] is not None and leader["finish_s"] is not None:
                row["gap_s"] = round(row["finish_s"] - leader["finish_s"], 1)
            else:
                row["gap_s"] = round(row["elapsed_s"] - _time_at(elapsed, distance, row["distance_m"]), 1)
    return rows
