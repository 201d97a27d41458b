"""Training zones: heart rate, power and pace bounds from the athlete's profile.

Constants are GoldenCheetah's (Zones.cpp, HrZones.cpp, PaceZones.cpp) and the
conventions in ``DOMAIN.md``. A zone set is a tuple of lower bounds in the metric's
own unit (bpm, W, m/s), ascending, the first one 0; :func:`zone_index` finds the zone
of a value by bisection. Zones are numbered from 1 in names (``Z1``) and from 0 as
indexes. Pace zones are kept as *speed* bounds: a faster pace is a higher speed, so
"pace % of threshold" is the inverse of speed % and lookups stay ascending.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from pipeline.models import AthleteProfile

#: HR as % of HRmax: Z1 below 60 (including under 50), Z2 60-70, Z3 70-80, Z4 80-90, Z5 90+.
HR_MAX_PCT = (0.0, 60.0, 70.0, 80.0, 90.0)
#: GoldenCheetah's default HR zones, lower bounds as % of LTHR.
HR_LTHR_PCT = (0.0, 68.0, 83.0, 94.0, 105.0)
#: Friel cycling zones, lower bounds as % of LTHR: Z1, Z2, Z3, Z4, Z5a, Z5b, Z5c. Friel
#: gives whole percentages (Z5b 103-106, Z5c > 106), so Z5c starts at 107.
HR_FRIEL_CYCLING_PCT = (0.0, 81.0, 90.0, 94.0, 100.0, 103.0, 107.0)
#: Coggan power zones, lower bounds as % of FTP (Z1 active recovery .. Z7 neuromuscular).
POWER_COGGAN_PCT = (0.0, 55.0, 75.0, 90.0, 105.0, 120.0, 150.0)
POWER_COGGAN_NAMES = (
    "active recovery",
    "endurance",
    "tempo",
    "threshold",
    "VO2max",
    "anaerobic",
    "neuromuscular",
)
#: Pace zones (Skiba, GoldenCheetah default), lower bounds as % of critical speed.
PACE_SPEED_PCT = (0.0, 80.0, 87.0, 95.0, 105.0, 119.0)


@dataclass(frozen=True, slots=True)
class ZoneSet:
    """Lower bounds of each zone in the metric's unit, ascending, first one 0."""

    metric: str
    unit: str
    lower: tuple[float, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"Z{i + 1}" for i in range(len(self.lower)))

    def index(self, value: float) -> int:
        return zone_index(value, self.lower)

    def name(self, value: float) -> str:
        return f"Z{self.index(value) + 1}"


def zone_index(value: float, lower: tuple[float, ...]) -> int:
    """The 0-based zone of ``value``: the last zone whose lower bound is <= value."""
    return max(0, bisect_right(lower, value) - 1)


def _scaled(reference: float, percents: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(reference * p / 100.0 for p in percents)


def hr_zones_hrmax(hr_max: float) -> ZoneSet:
    return ZoneSet("heart_rate", "bpm", _scaled(hr_max, HR_MAX_PCT))


def hr_zones_lthr(lthr: float) -> ZoneSet:
    return ZoneSet("heart_rate", "bpm", _scaled(lthr, HR_LTHR_PCT))


def hr_zones_friel_cycling(lthr: float) -> ZoneSet:
    return ZoneSet("heart_rate", "bpm", _scaled(lthr, HR_FRIEL_CYCLING_PCT))


def karvonen_hr(hr_rest: float, hr_max: float, fraction: float) -> float:
    """Target heart rate at ``fraction`` of heart-rate reserve."""
    return hr_rest + fraction * (hr_max - hr_rest)


def power_zones(ftp_w: float) -> ZoneSet:
    return ZoneSet("power", "W", _scaled(ftp_w, POWER_COGGAN_PCT))


def pace_zones(threshold_pace_s_per_km: float) -> ZoneSet:
    """Pace zones as speed bounds (m/s) from the threshold pace (critical speed)."""
    critical_speed_m_s = 1000.0 / threshold_pace_s_per_km
    return ZoneSet("pace", "m/s", _scaled(critical_speed_m_s, PACE_SPEED_PCT))


def pace_s_per_km(speed_m_s: float) -> float:
    """Pace from speed; the caller decides what "stopped" is and never passes 0."""
    return 1000.0 / speed_m_s


@dataclass(frozen=True, slots=True)
class AthleteZones:
    """The three zone sets time-in-zone is counted in, built once per profile."""

    heart_rate: ZoneSet
    power: ZoneSet
    pace: ZoneSet

    @classmethod
    def from_profile(cls, profile: AthleteProfile) -> AthleteZones:
        hr = (
            hr_zones_lthr(profile.lthr)
            if profile.hr_zone_model == "lthr"
            else hr_zones_hrmax(profile.hr_max)
        )
        return cls(
            heart_rate=hr,
            power=power_zones(profile.ftp_w),
            pace=pace_zones(profile.threshold_pace_s_per_km),
        )
