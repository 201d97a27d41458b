"""LTTB (pipeline/downsample.py): a worked case, and agreement with tsdownsample."""

from __future__ import annotations

import random

import pytest

from pipeline.downsample import lttb


def test_a_worked_case_keeps_the_spike_and_the_ends() -> None:
    # 10 points, keep 4: buckets 1-4 and 5-8. The spike at 3 makes the largest triangle
    # with point 0 and the next bucket's mean (6.5, 0); then, from 3 (3, 10) and the last
    # point (9, 0), the area 60 - 10 * (j - 3) is largest at j = 5.
    ys = [0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert lttb([float(x) for x in range(10)], ys, 4) == [0, 3, 5, 9]


def test_short_series_are_kept_whole_and_bad_arguments_refused() -> None:
    assert lttb([1.0, 2.0], [5.0, 6.0], 3) == [0, 1]
    with pytest.raises(ValueError, match="at least 3"):
        lttb([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], 2)
    with pytest.raises(ValueError, match="differ in length"):
        lttb([1.0, 2.0], [1.0], 3)


def test_agrees_with_tsdownsample_on_one_hertz_series() -> None:
    np = pytest.importorskip("numpy")
    tsdownsample = pytest.importorskip("tsdownsample")
    rng = random.Random(7)
    for _ in range(100):
        size = rng.randint(5, 5000)
        n = rng.randint(3, min(size, 600))
        xs = [1.7e9 + i for i in range(size)]
        ys = [0.0]
        for _ in range(size - 1):
            ys.append(ys[-1] + rng.gauss(0, 5))
        expected = tsdownsample.LTTBDownsampler().downsample(np.array(xs), np.array(ys), n_out=n)
        assert lttb(xs, ys, n) == [int(i) for i in expected], (size, n)
