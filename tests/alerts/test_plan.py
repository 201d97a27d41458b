"""Structured workouts: import (JSON, ZWO, ERG, MRC), errors naming where, the walk."""

from __future__ import annotations

import pytest

from agents.alerts.plan import (
    PlanError,
    WorkoutPlan,
    advance,
    current_interval,
    from_erg,
    from_mrc,
    from_zwo,
    parse_plan,
    plan_rows,
)

ZWO = """<workout_file>
  <author>coach</author><name>Sweet spot 3x8</name><sportType>bike</sportType>
  <workout>
    <Warmup Duration="600" PowerLow="0.50" PowerHigh="0.70"/>
    <IntervalsT Repeat="3" OnDuration="480" OffDuration="240" OnPower="0.90" OffPower="0.55"/>
    <textevent timeoffset="10" message="go"/>
    <SteadyState Duration="300" Power="0.6"/>
    <FreeRide Duration="120"/>
    <Cooldown Duration="300" PowerLow="0.6" PowerHigh="0.4"/>
  </workout>
</workout_file>"""

ERG = """[COURSE HEADER]
VERSION = 2
UNITS = ENGLISH
DESCRIPTION = 2x10 at 260
FILE NAME = twoby10.erg
MINUTES WATTS
[END COURSE HEADER]
[COURSE DATA]
0.00    150
10.00   150
10.00   260
20.00   260
20.00   130
25.00   130
25.00   260
35.00   260
35.00   100
40.00   150
[END COURSE DATA]
"""


def test_json_plan_validates_and_names_the_field() -> None:
    plan = parse_plan(
        {"name": "x", "intervals": [
            {"name": "warm-up", "duration_s": 600, "power_w": {"low": 140, "high": 190}},
            {"distance_m": 1000, "pace_s_per_km": {"low": 240, "high": 250}},
        ]},
        ftp_w=250,
    )  # fmt: skip
    assert isinstance(plan, WorkoutPlan) and len(plan.intervals) == 2
    with pytest.raises(PlanError, match=r"plan\.intervals\.0"):
        parse_plan({"intervals": [{"power_w": {"low": 1, "high": 2}}]}, 250)  # no length
    with pytest.raises(PlanError, match=r"plan\.intervals\.0\.power_w"):
        parse_plan({"intervals": [{"duration_s": 60, "power_w": {"low": 300, "high": 2}}]}, 250)
    with pytest.raises(PlanError, match="plan"):
        parse_plan([1, 2], 250)


def test_zwo_import_follows_the_file() -> None:
    plan = from_zwo(ZWO, ftp_w=250)
    assert plan.name == "Sweet spot 3x8"
    durations = [iv.duration_s for iv in plan.intervals]
    assert durations == [600, 480, 240, 480, 240, 480, 240, 300, 120, 300]
    on = plan.intervals[1].power_w
    assert (
        on is not None
        and on.low == pytest.approx(225 * 0.95, abs=0.1)
        and on.high == pytest.approx(225 * 1.05, abs=0.1)
    )
    warm = plan.intervals[0].power_w
    assert warm is not None and warm.low == pytest.approx(125 * 0.95, abs=0.1)
    assert warm.high == pytest.approx(175 * 1.05, abs=0.1)
    assert plan.intervals[8].power_w is None  # free ride: no target
    assert parse_plan({"zwo": ZWO}, 250) == plan


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("<workout_file><workout><SteadyState Power='0.5'/></workout></workout_file>", "Duration"),
        ("<workout_file><workout><Bogus Duration='5'/></workout></workout_file>", "element 1"),
        ("<workout_file><workout>", "not well-formed"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><workout_file/>", "DOCTYPE"),
        ("<workout_file><workout/></workout_file>", "no intervals"),
    ],
)
def test_zwo_errors_say_where(text: str, where: str) -> None:
    with pytest.raises(PlanError, match=where):
        from_zwo(text, 250)


def test_erg_and_mrc_import() -> None:
    plan = from_erg(ERG)
    assert [iv.duration_s for iv in plan.intervals] == [600, 600, 300, 600, 300]
    rep = plan.intervals[1].power_w
    assert rep is not None and (rep.low, rep.high) == (247.0, 273.0)
    cool = plan.intervals[4].power_w  # a ramp 100 -> 150 W
    assert cool is not None and (cool.low, cool.high) == (95.0, 157.5)
    mrc = from_mrc(ERG.replace("MINUTES WATTS", "MINUTES PERCENT").replace("260", "104"), 250)
    rep = mrc.intervals[1].power_w
    assert rep is not None and (rep.low, rep.high) == (247.0, 273.0)
    with pytest.raises(PlanError, match="ERG line 10"):
        from_erg(ERG.replace("10.00   150", "ten 150"))
    with pytest.raises(PlanError, match="backwards"):
        from_erg(ERG.replace("20.00   130", "5.00   130"))


def test_walking_the_plan_by_time_and_distance() -> None:
    plan = parse_plan(
        {"intervals": [
            {"name": "a", "duration_s": 60, "power_w": {"low": 100, "high": 120}},
            {"name": "b", "distance_m": 500},
            {"name": "c", "duration_s": 30, "heart_rate_bpm": {"low": 120, "high": 150}},
        ]},
        250,
    )  # fmt: skip
    rows = plan_rows(plan)
    cursor = [0, 0.0, 0.0]
    assert not advance(cursor, rows, 59.0, 300.0)
    assert current_interval(rows, cursor, 59.0, 300.0) == {
        "index": 0, "count": 3, "name": "a", "target": {"power_w": [100, 120]},
        "remaining_s": 1.0,
    }  # fmt: skip
    assert advance(cursor, rows, 61.0, 310.0)
    assert cursor[:2] == [1, 60.0]
    view = current_interval(rows, cursor, 100.0, 600.0)
    assert view is not None and view["name"] == "b" and view["remaining_m"] == 210.0
    assert advance(cursor, rows, 130.0, 830.0)  # 500 m after 310 m: at 810 m
    assert cursor[0] == 2 and cursor[2] == 810.0
    assert advance(cursor, rows, 200.0, 900.0)
    assert current_interval(rows, cursor, 200.0, 900.0) is None  # the plan is over


def test_the_interval_view_is_what_the_protocol_schema_declares() -> None:
    # What the live agent puts in metrics.interval, checked by the checked-in schema's
    # validator (the dashboard reads these fields).
    from pipeline.models import LiveMetrics
    from tests.wire_check import errors_of

    plan = parse_plan(
        {"intervals": [
            {"name": "a", "duration_s": 60, "power_w": {"low": 100, "high": 120},
             "heart_rate_bpm": {"low": 130, "high": 150}},
            {"name": "b", "distance_m": 500, "pace_s_per_km": {"low": 230, "high": 245}},
        ]},
        ftp_w=250.0,
    )  # fmt: skip
    rows = plan_rows(plan)
    cursor = [0, 0.0, 0.0]
    views = [current_interval(rows, cursor, 10.0, 50.0)]
    advance(cursor, rows, 61.0, 300.0)
    views.append(current_interval(rows, cursor, 70.0, 350.0))
    for view in views:
        assert view is not None
        LiveMetrics.model_validate(
            {"heart_rate": 140, "pace": None, "distance": None, "cadence": None, "interval": view}
        )
        event = {
            "type": "metrics_update",
            "timestamp": "2026-01-01T00:00:00Z",
            "metrics": {"heart_rate": 140, "pace": None, "distance": None, "cadence": None,
                        "interval": view},
        }  # fmt: skip
        assert errors_of(event) == []
    assert errors_of(
        {"type": "metrics_update", "metrics": {"heart_rate": 1, "pace": None, "distance": None,
                                               "cadence": None, "interval": {"index": 0}}}
    ), "an interval without count and target must not validate"  # fmt: skip
