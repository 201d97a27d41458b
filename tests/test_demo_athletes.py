"""The demo of ``livecoach up`` (pipeline/demo.py): what the athletes send, their plans
and alert bounds (pure: no servers)."""

from __future__ import annotations

import statistics

from agents.alerts.config import AlertConfig
from agents.alerts.plan import parse_plan
from pipeline.demo import demo_athletes, ride_speed
from pipeline.models import Sample


def test_ride_speed_on_a_flat_road() -> None:
    assert ride_speed(0) == 0.0
    speeds = [ride_speed(p) for p in (100, 200, 300, 400)]
    assert speeds == sorted(speeds)
    # About 30 km/h at 200 W for a rider in the drops; power grows with the cube of speed.
    assert 28 < speeds[1] * 3.6 < 35
    assert ride_speed(1600) < 2.1 * ride_speed(200)


def test_two_athletes_send_speed_distance_and_cadence() -> None:
    ben, ada = demo_athletes()
    assert (ben.sport, ada.sport) == ("ride", "run")
    for athlete in (ben, ada):
        fields = [s.fields for s in athlete.samples]
        for key in ("heart_rate", "speed_m_s", "distance_m", "cadence"):
            assert sum(key in f for f in fields) > 0.9 * len(fields), (athlete.name, key)
        distances = [f["distance_m"] for f in fields]
        assert distances == sorted(distances) and distances[-1] > 5_000
        # Every sample is one the edge takes.
        for s in athlete.samples[:300]:
            Sample.model_validate({"session_id": "00000000-0000-4000-8000-000000000001",
                                   "t": 1_780_000_000 + s.offset_s, **s.fields})  # fmt: skip
    assert all("power_w" in s.fields for s in ben.samples[:60])
    cadence = statistics.median(s.fields["cadence"] for s in ben.samples if s.fields["cadence"])
    assert 75 <= cadence <= 100
    cadence = statistics.median(s.fields["cadence"] for s in ada.samples if s.fields["cadence"])
    assert 150 <= cadence <= 190


def test_plans_and_bounds_make_alerts_in_the_first_minutes() -> None:
    for athlete in demo_athletes(4):
        plan = parse_plan(athlete.plan, ftp_w=athlete.profile["ftp_w"])
        assert plan.intervals, athlete.name
        config = AlertConfig.from_jsonb(athlete.profile["alert_settings"])
        ceiling = config.rules.heart_rate.high_bpm
        assert ceiling is not None
        # Minutes 2 to 5 of the warm-up run above the heart-rate ceiling...
        warm = [
            s.fields["heart_rate"]
            for s in athlete.samples
            if 120 <= s.offset_s < 300 and "heart_rate" in s.fields
        ]
        assert statistics.median(warm) > ceiling + 3, athlete.name
        # ...and off the warm-up's target.
        first = athlete.plan["intervals"][0]
        if athlete.sport == "ride":
            power = [s.fields.get("power_w", 0) for s in athlete.samples if 60 <= s.offset_s < 300]
            assert statistics.median(power) > first["power_w"]["high"], athlete.name
        else:
            speed = [
                s.fields.get("speed_m_s", 0) for s in athlete.samples if 60 <= s.offset_s < 300
            ]
            assert 1000 / statistics.median(speed) > first["pace_s_per_km"]["high"], athlete.name


def test_more_athletes_for_a_fuller_grid() -> None:
    athletes = demo_athletes(10)
    assert len(athletes) == 10
    assert len({a.name for a in athletes}) == 10 and len({a.email for a in athletes}) == 10
    assert {a.sport for a in athletes} == {"ride", "run"}
    assert len(demo_athletes(1)) == 1
