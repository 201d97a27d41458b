"""Bytes the leaderboard agent writes to Redis per board, against what changed.

``python -m bench.group_board_bytes [ATHLETES] [SECONDS]``: one group's board fed one
input per athlete a second through :mod:`agents.leaderboard` (no servers), in four
cases: a race and a class, with every athlete moving and with a fifth of them moving
(the rest paused). Per emission after the first: the whole board as the agent SETs it at
``group_board_key`` (agents/board_publisher.py), and the rows of the delta plus a 300 B
header (what a store of one field per athlete would write instead). Medians.
"""

from __future__ import annotations

import random
import statistics
import sys

import orjson

from agents import leaderboard as lb

GROUP = "00000000-0000-4000-8000-000000000900"


def _id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def measure(kind: str, moving_share: float, athletes: int, seconds: int) -> tuple[float, float]:
    """(whole board bytes, changed rows + header bytes), medians over the emissions."""
    rng = random.Random(1)
    board = lb.new_board(GROUP, {"id": GROUP, "kind": kind, "sport": "ride", "distance_m": None})
    speed = [3 + 2 * rng.random() for _ in range(athletes)]
    distance = [0.0] * athletes
    in_s = [0.0] * athletes
    whole_b: list[int] = []
    rows_b: list[int] = []
    for s in range(1, seconds + 1):
        for a in range(athletes):
            moving = a < athletes * moving_share or s == 1
            if moving:
                distance[a] += speed[a]
                in_s[a] += 1.0 if rng.random() < 0.7 else 0.0
            t = float(s if moving else 1)
            lb.apply(board, {
                "kind": "input", "group_id": GROUP, "session_id": _id(10_000 + a),
                "athlete_id": _id(20_000 + a), "ingest_ms": s * 1000,
                "status": "active" if moving else "paused", "t": 1e9 + t, "samples": int(t),
                "distance_m": distance[a], "elapsed_s": t, "track": [[t, distance[a]]],
                "pct_target": 100 * in_s[a] / t if kind == "class" else None,
                "time_in_zone_s": in_s[a] if kind == "class" else None,
                "np_w": 200.0 + a % 50, "w_per_kg": 3.0,
            })  # fmt: skip
        event, whole = lb.emit(board, float(s), full=s == 1)
        if event is None or s == 1:
            continue
        whole_b.append(len(orjson.dumps(whole)))
        rows_b.append(sum(len(orjson.dumps(row)) for row in event["rows"]) + 300)
    return statistics.median(whole_b), statistics.median(rows_b)


def main(argv: list[str]) -> None:
    athletes = int(argv[0]) if argv else 500
    seconds = int(argv[1]) if len(argv) > 1 else 60
    for kind, share in (("race", 1.0), ("class", 1.0), ("race", 0.2), ("class", 0.2)):
        whole, rows = measure(kind, share, athletes, seconds)
        print(f"{kind:5} {share:4.0%} moving: whole board {whole:9,.0f} B,"
              f" changed rows + header {rows:9,.0f} B per emission")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
