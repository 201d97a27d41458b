"""The window of time a client's clock is trusted in: a sample's ``t``, a lifecycle
change's ``at_ms``. A device with an unset or wrong clock sends dates in 1970 or 2099;
stored, they break a session's summary (a duration of a century) and the store agent
(a year past 9999 cannot be a ``datetime``). Outside the window is a 422 naming the field.

The window is the settings' ``client_time_past_s`` before and ``client_time_future_s``
after the edge's clock (docs/security.md): generous into the past, so a device that was
offline can still upload what it recorded, tight into the future.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from pipeline.settings import Settings


@dataclass(frozen=True)
class ClockWindow:
    past_s: float
    future_s: float

    @classmethod
    def of(cls, settings: Settings) -> ClockWindow:
        return cls(settings.client_time_past_s, settings.client_time_future_s)

    def refusal(self, epoch_s: float, now_s: float | None = None) -> str | None:
        """Why ``epoch_s`` is not accepted (a message for the field), or None if it is."""
        now = time.time() if now_s is None else now_s
        if math.isfinite(epoch_s) and now - self.past_s <= epoch_s <= now + self.future_s:
            return None
        return (
            f"expected a time at most {_span(self.past_s)} before and "
            f"{_span(self.future_s)} after the server's clock"
        )


def _span(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
