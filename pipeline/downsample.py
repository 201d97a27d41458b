"""Largest-Triangle-Three-Buckets (Steinarsson 2013, "Downsampling Time Series for
Visual Representation", ch. 4.2): the ``n`` points of a series that keep its shape.

The first and last points are kept; the points between are split into ``n - 2``
buckets of (almost) equal size, and from each bucket the point is kept that makes
the largest triangle with the point kept before it and the mean of the next bucket.
Peaks and troughs survive, unlike a bucket average (what a chart of an interval
session most needs).

Written here (about 30 lines) rather than taken from ``tsdownsample`` (maintained,
Rust): that would make numpy and a compiled wheel hard dependencies of the web edge
for series of a few thousand points per request; the tests check this implementation
against ``tsdownsample`` and against the paper's reference behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence


def lttb(xs: Sequence[float], ys: Sequence[float], n: int) -> list[int]:
    """Indexes (ascending) of the ``n`` points of ``(xs, ys)`` that LTTB keeps;
    every index when the series has ``n`` points or fewer. ``xs`` ascending."""
    size = len(xs)
    if len(ys) != size:
        raise ValueError(f"xs and ys differ in length: {size} and {len(ys)}")
    if n < 3:
        raise ValueError(f"keep at least 3 points, got {n}")
    if size <= n:
        return list(range(size))
    every = (size - 2) / (n - 2)
    kept = [0]
    a = 0
    for i in range(n - 2):
        # This bucket, and the next one (whose mean is the triangle's third corner).
        start, end = int(i * every) + 1, int((i + 1) * every) + 1
        next_start, next_end = end, min(int((i + 2) * every) + 1, size)
        count = next_end - next_start
        avg_x = sum(xs[next_start:next_end]) / count
        avg_y = sum(ys[next_start:next_end]) / count
        ax, ay = xs[a], ys[a]
        best, best_area = start, -1.0
        for j in range(start, end):
            area = abs((ax - avg_x) * (ys[j] - ay) - (ax - xs[j]) * (avg_y - ay))
            if area > best_area:
                best, best_area = j, area
        kept.append(best)
        a = best
    kept.append(size - 1)
    return kept
