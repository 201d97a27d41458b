"""Rolling windows with O(1) amortised updates, serialisable to compact JSON.

Used by :mod:`agents.session_metrics` for the live figures a coach watches: current
pace (speed over a few seconds), rolling heart rate (30 s, 3 min), current power
(3 s) and the 30-sample power window of Normalized Power. Each window keeps a running
sum next to its values, so reading the mean never walks the window; the values are
kept because a value must be subtracted when it leaves.

State lives in a Faust table (changelog-backed), so ``to_dict``/``from_dict`` return
plain lists of numbers, and the windows are bounded: by ``span_s`` in time (at the
device's sampling rate) or by ``size`` in samples.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class TimeWindow:
    """Values over the last ``span_s`` seconds: those with ``t > now - span_s``.

    Times must not decrease (the session state drops out-of-order samples before they
    get here). The sum is recomputed from the values when it is loaded, and every
    ``_RESUM_EVERY`` evictions, so floating-point drift cannot build up over hours.
    """

    __slots__ = ("_evictions", "_sum", "_times", "_values", "span_s")

    _RESUM_EVERY = 10_000

    def __init__(self, span_s: float) -> None:
        if span_s <= 0:
            raise ValueError(f"span_s must be positive, got {span_s}")
        self.span_s = span_s
        self._times: deque[float] = deque()
        self._values: deque[float] = deque()
        self._sum = 0.0
        self._evictions = 0

    def push(self, t: float, value: float) -> None:
        self._times.append(t)
        self._values.append(value)
        self._sum += value
        self.expire(t)

    def expire(self, now: float) -> None:
        """Drop the values that are ``span_s`` or more older than ``now``."""
        horizon = now - self.span_s
        times, values = self._times, self._values
        while times and times[0] <= horizon:
            times.popleft()
            self._sum -= values.popleft()
            self._evictions += 1
        if self._evictions >= self._RESUM_EVERY:
            self._sum = sum(values)
            self._evictions = 0

    def clear(self) -> None:
        self._times.clear()
        self._values.clear()
        self._sum = 0.0

    def __len__(self) -> int:
        return len(self._values)

    def mean(self) -> float | None:
        """The mean of the values in the window, None when it is empty."""
        if not self._values:
            return None
        return self._sum / len(self._values)

    def to_dict(self) -> dict[str, Any]:
        return {"span_s": self.span_s, "t": list(self._times), "v": list(self._values)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimeWindow:
        window = cls(float(data["span_s"]))
        window._times.extend(float(t) for t in data["t"])
        window._values.extend(float(v) for v in data["v"])
        window._sum = sum(window._values)
        return window


class CountWindow:
    """The last ``size`` values, for sample-count windows (Normalized Power's 30)."""

    __slots__ = ("_pushes", "_sum", "_values", "size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.size = size
        self._values: deque[float] = deque(maxlen=size)
        self._sum = 0.0
        self._pushes = 0

    def push(self, value: float) -> None:
        if len(self._values) == self.size:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        self._pushes += 1
        if self._pushes >= TimeWindow._RESUM_EVERY:
            self._sum = sum(self._values)
            self._pushes = 0

    def clear(self) -> None:
        self._values.clear()
        self._sum = 0.0

    def __len__(self) -> int:
        return len(self._values)

    def mean(self) -> float | None:
        """The mean of the values held (fewer than ``size`` at the start)."""
        if not self._values:
            return None
        return self._sum / len(self._values)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "v": list(self._values)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CountWindow:
        window = cls(int(data["size"]))
        window._values.extend(float(v) for v in data["v"])
        window._sum = sum(window._values)
        return window
