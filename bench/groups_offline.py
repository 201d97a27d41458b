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
