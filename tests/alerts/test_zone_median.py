"""``zone_median`` against its definition, on random windows with and without gaps.

Windows come two ways: written by hand (times and values only, judged by sorting) and
fed sample by sample as the engine feeds them, where the window keeps its values in
order as samples come and go and the median is a lookup.

The definition (its docstring): samples that do not count (None, or under ``floor``)
count as inside. So "low" is the middle of all the window's samples with those put
above every value, and "high" the middle with them put below every value. It is
undefined with fewer than three samples that count, or when no more than half count.
"""

from __future__ import annotations

import math
import random

import pytest

from agents.alerts.config import AlertConfig
from agents.alerts.rules import AlertEngine
from agents.alerts.signals import (
    _zone_push,
    _zone_window,
    new_signal_state,
    update_signals,
    zone_median,
)


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


def _random_value(rng: random.Random, gap_share: float) -> float | None:
    # Rounded as the engine rounds, so that equal values occur and evictions must
    # take out one of several equal values.
    return None if rng.random() < gap_share else round(rng.uniform(90, 190), 0)


@pytest.mark.parametrize("seed", range(10))
def test_a_fed_window_keeps_its_order_and_matches_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    span_s = rng.choice([10.0, 30.0, 90.0])
    window = _zone_window()
    t = 0.0
    for _ in range(2_000):
        # Mostly 1 Hz, with the odd gap that empties much of the window at once.
        t += rng.choice([1.0, 1.0, 1.0, 0.5, 2.0, 25.0])
        gap_share = rng.choice([0.0, 0.05, 0.5])
        _zone_push(window, t, _random_value(rng, gap_share), span_s)
        assert window["o"] == sorted(v for v in window["v"] if v is not None)
        assert all(u > t - span_s for u in window["t"])
        since_t = rng.choice([-math.inf, -math.inf, t - rng.uniform(0, span_s + 5)])
        floor = rng.choice([None, None, 140.0])
        expected = _by_definition(window["t"], window["v"], since_t, floor)
        assert zone_median(window, since_t, floor) == expected, (window, since_t, floor)


def test_a_window_saved_without_its_order_gets_it_on_the_next_sample() -> None:
    # States in a changelog written before the ordered values were kept.
    window = {"t": [1.0, 2.0, 3.0, 4.0], "v": [150.0, None, 120.0, 130.0]}
    _zone_push(window, 5.0, 140.0, span_s=3.5)
    assert window == {
        "t": [2.0, 3.0, 4.0, 5.0],
        "v": [None, 120.0, 130.0, 140.0],
        "o": [120.0, 130.0, 140.0],
    }
    # Half the window counts (3 of 4, one a dropout): low is 140, high 120.
    assert zone_median(window, -math.inf) == (140.0, 120.0)
    assert zone_median(window, -math.inf) == _by_definition(
        window["t"], window["v"], -math.inf, None
    )


def test_zone_windows_hold_rounded_times_and_values() -> None:
    """What the windows hold (and the changelog stores): times from the first sample
    to the hundredth of a second, heart rate and power to a tenth; whole numbers as
    they came, fractional ones rounded as ``round`` rounds them."""
    params = AlertEngine(AlertConfig())._params
    sig = new_signal_state()
    t0 = 1_767_261_600.0
    samples = [(0.0, 150.0, 200.0), (1.004, 150.26, 201.35), (2.0, 151.0, 202.0),
               (3.127, 149.95, 0.5), (4.5, 152.04, 233.349)]  # fmt: skip
    for dt, hr, power in samples:
        update_signals(sig, params, t0 + dt, hr, power, None, 90.0, (True, True, False))
    assert sig["hr"]["t"] == [round(dt, 2) for dt, _, _ in samples]
    # Each value is the median of the last three (none for the first two): by hand,
    # 150.26, 150.26, 151.0 and 201.35, 201.35, 202.0.
    assert sig["hr"]["v"] == [None, None, 150.3, 150.3, 151.0]
    assert sig["pw"]["v"] == [None, None, 201.3, 201.3, 202.0]
    assert all(type(t) is float for t in sig["hr"]["t"])
