"""Running totals of a stretch of a session (a lap, or the whole session).

:class:`Totals` holds sums and counts, not samples, so a lap costs a dozen numbers in
the per-session state whatever its length; :meth:`Totals.summary` turns them into the
lap summary sent to dashboards and stored with the session. Means are per sample over
the samples that carry the metric (a dropout is left out, not counted as zero).

Automatic laps (:data:`LapMode`): every :data:`LAP_DISTANCE_M` of distance, or every
:data:`LAP_TIME_S` of moving time, chosen per session; manual laps close the current
lap in any mode.
"""

from __future__ import annotations

from typing import Any, Literal

LapMode = Literal["distance", "time", "manual"]
LapTrigger = Literal["distance", "time", "manual", "stop"]

LAP_DISTANCE_M = 1000.0
LAP_TIME_S = 300.0

#: Below this speed an athlete is stopped and pace is undefined (33:20 min/km).
MOVING_SPEED_MIN_M_S = 0.5

_FIELDS = (
    "start_t",
    "end_t",
    "samples",
    "moving_s",
    "distance_m",
    "n_hr",
    "sum_hr",
    "hr_s",
    "sum_hr_dt",
    "max_hr",
    "n_power",
    "sum_power",
    "power_s",
    "sum_power_dt",
    "max_power",
    "n_speed",
    "sum_speed",
    "n_cadence",
    "sum_cadence",
)


class Totals:
    __slots__ = _FIELDS

    def __init__(self, start_t: float) -> None:
        self.start_t = start_t
        self.end_t = start_t
        self.samples = 0
        self.moving_s = 0.0
        self.distance_m = 0.0
        self.n_hr = 0
        self.sum_hr = 0.0
        # Time-weighted sums (value * dt) and the time they cover, for irregular sampling.
        self.hr_s = 0.0
        self.sum_hr_dt = 0.0
        self.max_hr: float | None = None
        self.n_power = 0
        self.sum_power = 0.0
        self.power_s = 0.0
        self.sum_power_dt = 0.0
        self.max_power: float | None = None
        self.n_speed = 0
        self.sum_speed = 0.0
        self.n_cadence = 0
        self.sum_cadence = 0.0

    def add(
        self,
        t: float,
        dt_s: float,
        distance_step_m: float,
        heart_rate: float | None,
        power_w: float | None,
        speed_m_s: float | None,
        cadence: float | None,
    ) -> None:
        self.end_t = t
        self.samples += 1
        self.moving_s += dt_s
        self.distance_m += distance_step_m
        if heart_rate is not None:
            self.n_hr += 1
            self.sum_hr += heart_rate
            self.hr_s += dt_s
            self.sum_hr_dt += heart_rate * dt_s
            if self.max_hr is None or heart_rate > self.max_hr:
                self.max_hr = heart_rate
        if power_w is not None:
            self.n_power += 1
            self.sum_power += power_w
            self.power_s += dt_s
            self.sum_power_dt += power_w * dt_s
            if self.max_power is None or power_w > self.max_power:
                self.max_power = power_w
        if speed_m_s is not None:
            self.n_speed += 1
            self.sum_speed += speed_m_s
        if cadence is not None:
            self.n_cadence += 1
            self.sum_cadence += cadence

    @property
    def mean_hr(self) -> float | None:
        return self.sum_hr / self.n_hr if self.n_hr else None

    @property
    def mean_power(self) -> float | None:
        return self.sum_power / self.n_power if self.n_power else None

    @property
    def mean_hr_time_weighted(self) -> float | None:
        return self.sum_hr_dt / self.hr_s if self.hr_s > 0 else None

    @property
    def mean_power_time_weighted(self) -> float | None:
        return self.sum_power_dt / self.power_s if self.power_s > 0 else None

    @property
    def mean_speed_m_s(self) -> float | None:
        return self.sum_speed / self.n_speed if self.n_speed else None

    @property
    def mean_cadence(self) -> float | None:
        return self.sum_cadence / self.n_cadence if self.n_cadence else None

    def summary(self) -> dict[str, Any]:
        speed = self.mean_speed_m_s
        if speed is None and self.moving_s > 0 and self.distance_m > 0:
            speed = self.distance_m / self.moving_s
        return {
            "start_t": self.start_t,
            "end_t": self.end_t,
            "samples": self.samples,
            "moving_s": self.moving_s,
            "distance_m": self.distance_m,
            "mean_hr": self.mean_hr,
            "max_hr": self.max_hr,
            "mean_power": self.mean_power,
            "max_power": self.max_power,
            "mean_speed_m_s": speed,
            "pace_s_per_km": (
                1000.0 / speed if speed is not None and speed >= MOVING_SPEED_MIN_M_S else None
            ),
            "mean_cadence": self.mean_cadence,
        }

    def to_list(self) -> list[Any]:
        return [getattr(self, name) for name in _FIELDS]

    @classmethod
    def from_list(cls, values: list[Any]) -> Totals:
        totals = cls(float(values[0]))
        for name, value in zip(_FIELDS, values, strict=True):
            setattr(totals, name, value)
        return totals
