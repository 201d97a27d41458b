"""Rolling windows: by time and by count, incremental, serialisable."""

from __future__ import annotations

import json

import pytest

from agents.rolling import CountWindow, TimeWindow


def test_time_window_keeps_the_last_span() -> None:
    window = TimeWindow(30)
    for t in range(60):
        window.push(t, float(t))
    # Values with t > 59 - 30, i.e. 30..59.
    assert len(window) == 30
    assert window.mean() == pytest.approx(44.5)


def test_time_window_expires_without_new_values() -> None:
    window = TimeWindow(3)
    window.push(0, 100)
    window.push(1, 200)
    window.expire(3.5)
    assert window.mean() == 200
    window.expire(4)
    assert window.mean() is None
    assert len(window) == 0


def test_time_window_irregular_sampling() -> None:
    window = TimeWindow(10)
    for t, v in [(0, 1), (4, 2), (9, 3), (12, 4)]:
        window.push(t, v)
    assert window.mean() == pytest.approx((2 + 3 + 4) / 3)


def test_time_window_round_trip() -> None:
    window = TimeWindow(5)
    for t in range(8):
        window.push(t, t * 2.0)
    copy = TimeWindow.from_dict(json.loads(json.dumps(window.to_dict())))
    assert copy.mean() == window.mean()
    copy.push(8, 100)
    window.push(8, 100)
    assert copy.mean() == window.mean()


def test_time_window_rejects_bad_span() -> None:
    with pytest.raises(ValueError, match="span_s must be positive"):
        TimeWindow(0)


def test_count_window_partial_then_full() -> None:
    window = CountWindow(3)
    assert window.mean() is None
    window.push(3)
    assert window.mean() == 3
    window.push(6)
    assert window.mean() == 4.5
    window.push(9)
    window.push(12)
    assert window.mean() == 9
    copy = CountWindow.from_dict(json.loads(json.dumps(window.to_dict())))
    assert copy.mean() == 9 and len(copy) == 3


def test_long_run_does_not_drift() -> None:
    window = CountWindow(30)
    for i in range(100_000):
        window.push(0.1 * (i % 7))
    exact = sum(0.1 * (i % 7) for i in range(100_000 - 30, 100_000)) / 30
    assert window.mean() == pytest.approx(exact, abs=1e-12)
