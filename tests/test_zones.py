"""Zone bounds and lookups, worked by hand from the percentages in DOMAIN.md."""

from __future__ import annotations

import pytest

from agents.zones import (
    AthleteZones,
    hr_zones_friel_cycling,
    hr_zones_hrmax,
    hr_zones_lthr,
    karvonen_hr,
    pace_s_per_km,
    pace_zones,
    power_zones,
    zone_index,
)
from pipeline.models import AthleteProfile


def test_hr_zones_percent_of_hrmax() -> None:
    zones = hr_zones_hrmax(200)
    assert zones.lower == (0, 120, 140, 160, 180)
    assert [zones.name(hr) for hr in (90, 119.9, 120, 150, 179, 180, 200)] == [
        "Z1",
        "Z1",
        "Z2",
        "Z3",
        "Z4",
        "Z5",
        "Z5",
    ]


def test_hr_zones_goldencheetah_lthr() -> None:
    assert hr_zones_lthr(170).lower == pytest.approx((0, 115.6, 141.1, 159.8, 178.5))


def test_friel_cycling_has_seven_zones() -> None:
    zones = hr_zones_friel_cycling(160)
    assert len(zones.names) == 7
    assert zones.name(160) == "Z5"  # Z5a starts at 100 % of LTHR


def test_karvonen() -> None:
    assert karvonen_hr(60, 190, 0.5) == 125
    assert karvonen_hr(60, 190, 1.0) == 190


def test_coggan_power_zones() -> None:
    zones = power_zones(250)
    assert zones.lower == (0, 137.5, 187.5, 225, 262.5, 300, 375)
    assert zones.name(0) == "Z1"
    assert zones.name(262.5) == "Z5"
    assert zones.name(1000) == "Z7"


def test_pace_zones_are_speed_bounds_from_threshold_pace() -> None:
    zones = pace_zones(300)  # 5:00/km threshold = 3.333 m/s critical speed
    cs = 1000 / 300
    assert zones.lower == pytest.approx(tuple(cs * p / 100 for p in (0, 80, 87, 95, 105, 119)))
    assert zones.name(1000 / 240) == "Z6"  # 4:00/km is 125 % of critical speed
    assert zones.name(1000 / 300) == "Z4"  # threshold pace itself
    assert zones.name(1000 / 420) == "Z1"  # 7:00/km is 71 %
    assert pace_s_per_km(4.0) == 250


def test_zone_index_below_first_bound_is_zone_one() -> None:
    assert zone_index(-1, (0, 10)) == 0
    assert zone_index(10, (0, 10)) == 1


def test_zones_from_profile() -> None:
    zones = AthleteZones.from_profile(AthleteProfile(hr_zone_model="lthr", lthr=170, ftp_w=300))
    assert zones.heart_rate.lower == hr_zones_lthr(170).lower
    assert zones.power.lower == power_zones(300).lower
