"""``zone_median`` against its definition, on random windows with and without gaps.

The definition (its docstring): samples that do not count (None, or under ``floor``)
count as inside. So "low" is the middle of all the window's samples with those put
above every value, and "high" the middle with them put below every value. It is
undefined with fewer than three samples that count, or when no more than half count.
"""

from __future__ import annotations

import math
import random

import pytest

from agents.alerts.signals import zone_median


def _by_definition(
    times: list[float], values: list[float | None], since_t: float, floor: float | None
) -> tuple[float, float] | None:
    window = [v for t, v in zip(times, values, strict=True) if t >= since_t]
    counted = [v for v in window if v is not None and (floor is None or v >= floor)]
    total = len(window)
    if len(counted) < 3 or len(counted) <= total // 2:
        return None
    inside = total - len(counted)
    low = sorted(counted + [math.inf] * inside)[total // 2]
    high = sorted([-math.inf] * inside + counted)[total - 1 - total // 2]
    return low, high


@pytest.mark.parametrize("seed", range(20))
def test_zone_median_matches_its_definition(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        size = rng.randint(0, 70)
        times = [float(i) for i in range(size)]
        gap_share = rng.choice([0.0, 0.0, 0.05, 0.3, 0.7])
        values: list[float | None] = [
            None if rng.random() < gap_share else round(rng.uniform(90, 190), 1)
            for _ in range(size)
        ]
        since_t = rng.choice([-math.inf, rng.uniform(-5, size + 5)])
        floor = rng.choice([None, None, 120.0])
        window = {"t": list(times), "v": list(values)}
        got = zone_median(window, since_t, floor)
        assert got == _by_definition(times, values, since_t, floor), (values, since_t, floor)
        assert window == {"t": times, "v": values}, "the window was changed"
