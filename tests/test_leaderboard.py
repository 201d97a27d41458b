"""Group leaderboards without Faust: the live agent's group inputs (agents/group_member.py
through agents/processing.py) and the board (agents/leaderboard.py), checked by hand
and against the offline computation of bench/groups_offline.py (pure unit tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agents import leaderboard as lb
from agents.processing import Processor
from bench.groups_offline import Track, race_standings
from pipeline.demo import demo_athletes
from pipeline.records import GroupInputRecord, groups_topic_record
from tests.ids import sid

GROUP = sid(900)
T0 = 1_767_261_600.0


def _input(athlete: int, **figures: Any) -> dict[str, Any]:
    if "track" not in figures and "elapsed_s" in figures and "distance_m" in figures:
        figures["track"] = [[figures["elapsed_s"], figures["distance_m"]]]
    record = {
        "kind": "input", "group_id": GROUP, "session_id": sid(100 + athlete),
        "athlete_id": sid(200 + athlete), "ingest_ms": 1_000 + athlete, "status": "active",
        "samples": 10, **figures,
    }  # fmt: skip
    groups_topic_record.validate_python(record)  # the topic's own model accepts it
    return record


def _board(kind: str = "race", **group: Any) -> lb.Board:
    return lb.new_board(GROUP, {"id": GROUP, "kind": kind, "sport": "ride", **group})


def _ranks(board: lb.Board) -> list[tuple[str, int | None, str]]:
    return [
        (str(int(r["athlete_id"][-12:], 16)), r["rank"], r["status"]) for r in lb.standings(board)
    ]


def test_a_race_ranks_finishers_then_distance_with_competition_ranks_and_no_data_last() -> None:
    board = _board(distance_m=1000.0)
    lb.apply(board, _input(1, t=T0 + 100, distance_m=800.0, elapsed_s=100.0))
    lb.apply(board, _input(2, t=T0 + 100, distance_m=900.0, elapsed_s=100.0))
    lb.apply(board, _input(3, t=T0 + 100, distance_m=800.04, elapsed_s=100.0))  # ties at 0.1 m
    lb.apply(board, _input(4, t=T0 + 120, distance_m=1000.0, elapsed_s=120.0, finish_s=119.5))
    lb.apply(board, _input(5, t=T0 + 110, distance_m=1000.0, elapsed_s=110.0, finish_s=108.0))
    lb.apply(board, _input(6, samples=0))  # joined, no sample yet
    lb.apply(board, _input(7, t=T0 + 90, distance_m=700.0, elapsed_s=90.0, status="left"))
    assert _ranks(board) == [
        ("205", 1, "finished"), ("204", 2, "finished"), ("202", 3, "active"),
        ("201", 4, "active"), ("203", 4, "active"), ("207", 6, "left"), ("206", None, "no_data"),
    ]  # fmt: skip
    rows = {str(int(r["athlete_id"][-12:], 16)): r for r in lb.standings(board)}
    assert rows["204"]["gap_s"] == 11.5 and rows["204"]["gap_m"] == 0.0
    assert rows["201"]["gap_m"] == 200.0
    assert rows["206"]["gap_m"] is None and rows["206"]["rank"] is None


def test_gap_s_is_the_time_behind_the_leader_at_the_athlete_s_distance() -> None:
    board = _board()
    # The leader at 5 m/s for 200 s, the other at 4 m/s: at 800 m after 200 s, the
    # leader was there after 160 s.
    for second in range(1, 201):
        lb.apply(board, _input(1, t=T0 + second, distance_m=5.0 * second, elapsed_s=second))
        lb.apply(board, _input(2, t=T0 + second, distance_m=4.0 * second, elapsed_s=second))
    rows = {str(int(r["athlete_id"][-12:], 16)): r for r in lb.standings(board)}
    assert rows["201"]["rank"] == 1 and rows["201"]["gap_s"] == 0.0
    assert rows["202"]["gap_m"] == 200.0
    assert rows["202"]["gap_s"] == pytest.approx(40.0, abs=0.05)


def test_the_history_stays_bounded_and_still_gives_gaps() -> None:
    board = _board()
    hours = 4 * 3600
    for second in range(0, hours, 5):
        lb.apply(board, _input(1, t=T0 + second, distance_m=5.0 * second, elapsed_s=second))
    step, times, distances = board["members"][sid(201)]["h"]
    assert len(times) <= lb.HISTORY_MAX_POINTS and len(times) == len(distances)
    assert step > lb.HISTORY_STEP_S
    lb.apply(board, _input(2, t=T0 + hours, distance_m=3000.0, elapsed_s=hours))
    rows = {str(int(r["athlete_id"][-12:], 16)): r for r in lb.standings(board)}
    assert rows["202"]["gap_s"] == pytest.approx(hours - 600.0, abs=0.5)


def test_a_class_ranks_by_target_held_then_time_in_zone() -> None:
    board = _board("class")
    lb.apply(board, _input(1, t=T0, pct_target=80.0, time_in_zone_s=400.0))
    lb.apply(board, _input(2, t=T0, pct_target=90.0, time_in_zone_s=300.0))
    lb.apply(board, _input(3, t=T0, pct_target=80.0, time_in_zone_s=500.0))
    lb.apply(board, _input(4, t=T0, pct_target=80.0, time_in_zone_s=500.0))
    lb.apply(board, _input(5, t=T0, distance_m=100.0))  # no targeted second yet
    assert _ranks(board) == [
        ("202", 1, "active"), ("203", 2, "active"), ("204", 2, "active"),
        ("201", 4, "active"), ("205", None, "no_data"),
    ]  # fmt: skip
    assert all(r["gap_s"] is None and r["gap_m"] is None for r in lb.standings(board))


def test_boards_are_at_most_one_a_second_deltas_carry_only_changed_rows() -> None:
    board = _board()
    assert lb.due(board, 0.0) is None  # nobody yet
    lb.apply(board, _input(1, t=T0 + 1, distance_m=5.0, elapsed_s=1.0))
    lb.apply(board, _input(2, t=T0 + 1, distance_m=4.0, elapsed_s=1.0))
    assert lb.due(board, 100.0) == "full"
    first, whole = lb.emit(board, 100.0, full=True)
    assert first is not None and first["full"] and first["seq"] == 1 and len(first["rows"]) == 2
    assert first["channels"] == [f"live:group:{GROUP}"] and whole["rows"] == first["rows"]
    lb.apply(board, _input(2, t=T0 + 2, distance_m=8.0, elapsed_s=2.0))
    assert lb.due(board, 100.5) is None  # within the second
    assert lb.due(board, 101.0) == "delta"
    delta, whole = lb.emit(board, 101.0)
    assert delta is not None and not delta["full"] and delta["seq"] == 2
    # Athlete 2 moved; athlete 1's gap changed with it: both rows, nothing else.
    assert {r["athlete_id"] for r in delta["rows"]} == {sid(201), sid(202)}
    assert len(whole["rows"]) == 2 and whole["seq"] == 2 and whole["full"]
    lb.apply(board, _input(1, t=T0 + 2, distance_m=5.0, elapsed_s=1.0, alerts_open=0))
    nothing, _ = lb.emit(board, 102.0)  # a repeat changes no published figure
    assert nothing is None and board["seq"] == 2
    assert lb.due(board, 102.0 + lb.FULL_EVERY_S) == "full"
    lb.request_full(board)
    assert lb.due(board, 103.5) == "full"


def test_a_finished_group_ignores_later_inputs_and_its_board_is_final() -> None:
    board = _board()
    lb.apply(board, _input(1, t=T0 + 1, distance_m=5.0, elapsed_s=1.0))
    finished = lb.apply(board, {"kind": "control", "group_id": GROUP, "action": "finished",
                                "ingest_ms": 1, "at_ms": 1})  # fmt: skip
    assert finished
    event, _ = lb.emit(board, 5.0, final=True)
    assert event is not None and event["final"] and event["full"]
    lb.apply(board, _input(1, t=T0 + 2, distance_m=50.0, elapsed_s=2.0))
    assert lb.standings(board)[0]["distance_m"] == 5.0
    assert lb.due(board, 100.0) is None


def _removed(n: int, *, leaving: bool, session: int | None = None) -> dict[str, Any]:
    record = {"kind": "control", "group_id": GROUP, "action": "removed", "ingest_ms": 9,
              "at_ms": 9, "payload": {"athlete_id": sid(200 + n), "leaving": leaving,
                                      "session_id": sid(100 + (session or n))}}  # fmt: skip
    groups_topic_record.validate_python(record)
    return record


def test_a_removed_member_leaves_the_board_in_a_delta_and_stays_off_it() -> None:
    board = _board()
    for n in (1, 2, 3):
        lb.apply(board, _input(n, t=T0 + 1, distance_m=5.0 * n, elapsed_s=1.0))
    first, _ = lb.emit(board, 100.0, full=True)
    assert first is not None and len(first["rows"]) == 3 and first["removed"] == []
    lb.apply(board, _removed(3, leaving=True))
    assert lb.due(board, 101.0) == "delta"
    delta, whole = lb.emit(board, 101.0)
    assert delta is not None and not delta["full"] and delta["removed"] == [sid(203)]
    # The leader went: the others' ranks and gaps moved with it.
    assert {r["athlete_id"] for r in delta["rows"]} == {sid(201), sid(202)}
    assert [r["athlete_id"] for r in whole["rows"]] == [sid(202), sid(201)]
    # Inputs its session made before it heard it left, then its last one: dropped.
    lb.apply(board, _input(3, t=T0 + 2, distance_m=40.0, elapsed_s=2.0))
    lb.apply(board, _input(3, t=T0 + 3, distance_m=45.0, elapsed_s=3.0, status="left"))
    later, whole = lb.emit(board, 102.0, full=True)
    assert later is not None and sid(203) not in {r["athlete_id"] for r in later["rows"]}
    assert later["removed"] == []  # a full board is the whole board
    # Invited again and joined with the same session: a new membership.
    lb.apply(board, _input(3, t=T0 + 9, distance_m=60.0, elapsed_s=9.0))
    assert sid(203) in {r["athlete_id"] for r in lb.standings(board)}


def test_a_removed_member_who_had_left_is_not_waited_for_and_the_last_one_is_sent() -> None:
    board = _board()
    lb.apply(board, _input(1, t=T0 + 1, distance_m=5.0, elapsed_s=1.0, status="left"))
    lb.emit(board, 100.0, full=True)
    lb.apply(board, _removed(1, leaving=False))
    assert board["gone"] == {} and board["members"] == {}
    assert lb.due(board, 101.0) == "delta"  # the last member gone is still news
    delta, whole = lb.emit(board, 101.0)
    assert delta is not None and delta["removed"] == [sid(201)] and delta["rows"] == []
    assert whole["rows"] == [] and lb.due(board, 200.0) is None
    lb.apply(board, _input(1, t=T0 + 9, distance_m=60.0, elapsed_s=9.0))  # re-joined
    assert len(lb.standings(board)) == 1


def test_removing_someone_not_on_the_board_or_after_the_finish_changes_nothing() -> None:
    board = _board()
    lb.apply(board, _input(1, t=T0 + 1, distance_m=5.0, elapsed_s=1.0))
    lb.emit(board, 100.0, full=True)
    lb.apply(board, _removed(2, leaving=False))  # invited, never joined
    assert lb.emit(board, 101.0)[0] is None
    lb.apply(board, {"kind": "control", "group_id": GROUP, "action": "finished",
                     "ingest_ms": 1, "at_ms": 1})  # fmt: skip
    lb.apply(board, _removed(1, leaving=True))
    assert len(lb.standings(board)) == 1


def test_an_older_snapshot_read_again_does_not_move_a_row_back() -> None:
    board = _board()
    lb.apply(board, _input(1, t=T0 + 20, distance_m=100.0, elapsed_s=20.0))
    lb.apply(board, _input(1, t=T0 + 10, distance_m=50.0, elapsed_s=10.0))
    assert lb.standings(board)[0]["distance_m"] == 100.0


# --- the live agent's side: one input per record ------------------------------------


def _group(kind: str = "race", **extra: Any) -> dict[str, Any]:
    return {"id": GROUP, "kind": kind, "sport": "ride", "distance_m": None,
            "starts_at_ms": None, "plan": None, **extra}  # fmt: skip


def _control(n: int, action: str, at_s: float, **payload: Any) -> dict[str, Any]:
    return {"kind": "control", "session_id": sid(100 + n), "user_id": sid(200 + n),
            "ingest_ms": 5, "action": action, "at_ms": int(at_s * 1000),
            "payload": payload}  # fmt: skip


def _batch(n: int, samples: list[dict[str, Any]], ingest_ms: int = 7) -> dict[str, Any]:
    return {"kind": "samples", "session_id": sid(100 + n), "user_id": sid(200 + n),
            "ingest_ms": ingest_ms, "samples": samples}  # fmt: skip


def test_a_session_in_a_group_sends_one_input_per_record_and_leaves_with_left() -> None:
    processor = Processor()
    out = processor.process(None, _control(1, "start", T0, group=_group(),
                                           profile={"weight_kg": 80.0}))  # fmt: skip
    assert len(out.group_inputs) == 1 and out.group_inputs[0]["status"] == "active"
    samples = [{"session_id": sid(101), "t": T0 + i, "power_w": 240.0, "speed_m_s": 10.0}
               for i in range(1, 11)]  # fmt: skip
    out = processor.process(out.state, _batch(1, samples, ingest_ms=1234))
    (record,) = out.group_inputs
    parsed = GroupInputRecord.model_validate(record)
    assert parsed.samples == 10 and parsed.ingest_ms == 1234 and parsed.t == T0 + 10
    assert parsed.distance_m == pytest.approx(100.0)  # 1 s for the first, then 9 x 10 m
    assert parsed.w_per_kg == pytest.approx(3.0)
    out = processor.process(out.state, _control(1, "group", T0 + 11, group=None, left=GROUP))
    assert [r["status"] for r in out.group_inputs] == ["left"]
    assert [e["group_id"] for e in out.events if e.get("event") == "group"] == [None]
    out = processor.process(out.state, _batch(1, [{"session_id": sid(101), "t": T0 + 12}]))
    assert out.group_inputs == []


def test_a_stop_is_the_last_input_a_later_leave_or_removal_sends_nothing() -> None:
    processor = Processor()
    out = processor.process(None, _control(1, "start", T0, group=_group()))
    out = processor.process(out.state, _batch(1, [{"session_id": sid(101), "t": T0 + 1}]))
    out = processor.process(out.state, _control(1, "stop", T0 + 2))
    assert [r["status"] for r in out.group_inputs] == ["stopped"]
    # The edge's ``left`` for a leave or a removal that raced the stop.
    out = processor.process(out.state, _control(1, "group", T0 + 3, group=None, left=GROUP))
    assert out.group_inputs == []


def test_alerts_of_a_session_in_a_group_carry_the_group_id() -> None:
    processor = Processor()
    alerts = {"rules": {"heart_rate": {"enabled": True, "high_bpm": 150, "dwell_s": 5}}}
    out = processor.process(None, _control(1, "start", T0, alerts=alerts))
    out = processor.process(out.state, _control(1, "group", T0, group=_group()))
    samples = [{"session_id": sid(101), "t": T0 + i, "heart_rate": 185.0} for i in range(1, 71)]
    out = processor.process(out.state, _batch(1, samples))
    raised = [e for e in out.events if e["type"] == "alert"]
    assert raised and all(e["group_id"] == GROUP for e in raised)
    # Open: raised within the last minute of sample time.
    recent = [e for e in raised if e["timestamp"] > T0 + 70 - 60]
    assert recent and out.group_inputs[-1]["alerts_open"] == len(recent)


def test_a_class_counts_time_in_the_shared_plan_s_target() -> None:
    plan = {"intervals": [{"duration_s": 60, "power_w": {"low": 200, "high": 220}},
                          {"duration_s": 60}]}  # fmt: skip
    processor = Processor()
    out = processor.process(
        None,
        _control(1, "start", T0, group=_group("class", plan=plan, starts_at_ms=int(T0 * 1000))),
    )
    # 30 s in target, 30 s under, then an interval without a target.
    samples = [{"session_id": sid(101), "t": T0 + i, "power_w": 210.0 if i <= 30 else 150.0}
               for i in range(1, 120)]  # fmt: skip
    out = processor.process(out.state, _batch(1, samples))
    (record,) = out.group_inputs
    # The first interval ends at T0 + 60: 59 targeted seconds, 30 of them in target.
    assert record["time_in_zone_s"] == pytest.approx(30.0)
    assert record["pct_target"] == pytest.approx(100.0 * 30 / 59)


# --- against the offline computation, over real-looking data -------------------------

ATHLETES = 6
SECONDS = 900
BATCH = 10


def _run_demo(finish_m: float | None) -> tuple[lb.Board, list[Track]]:
    """Six demo athletes (pipeline/demo.py) in one race through the Processor and a board,
    records interleaved by time as the live topic would carry them."""
    processor = Processor(alerts=False)
    board = lb.new_board(GROUP, _group(distance_m=finish_m))
    athletes = demo_athletes(ATHLETES)
    states: list[Any] = [None] * ATHLETES
    tracks = []
    for n, athlete in enumerate(athletes):
        out = processor.process(None, _control(n, "start", T0, group=_group(distance_m=finish_m)))
        states[n] = out.state
        for record in out.group_inputs:
            lb.apply(board, record)
        raw = [s for s in athlete.samples if 0 < s.offset_s <= SECONDS]
        tracks.append(Track(sid(200 + n), T0, np.array([T0 + s.offset_s for s in raw]),
                            np.array([s.fields["distance_m"] for s in raw])))  # fmt: skip
    for first in range(0, SECONDS, BATCH):
        for n, athlete in enumerate(athletes):
            samples = [{"session_id": sid(100 + n), "t": T0 + s.offset_s, **s.fields}
                       for s in athlete.samples if first < s.offset_s <= first + BATCH]  # fmt: skip
            if not samples:
                continue
            out = processor.process(states[n], _batch(n, samples))
            states[n] = out.state
            for record in out.group_inputs:
                lb.apply(board, record)
    return board, tracks


@pytest.mark.parametrize("finish", [False, True])
def test_race_standings_match_an_offline_computation_of_the_raw_samples(finish: bool) -> None:
    # The finish line where the median athlete is after 10 minutes: some finish.
    probe, tracks = _run_demo(None)
    finish_m = float(np.median([r["distance_m"] for r in lb.standings(probe)])) * 0.66
    board, tracks = _run_demo(finish_m if finish else None)
    live = lb.standings(board)
    offline = race_standings(tracks, finish_m=finish_m if finish else None)
    assert [r["athlete_id"] for r in live] == [r["athlete_id"] for r in offline]
    for got, want in zip(live, offline, strict=True):
        assert got["rank"] == want["rank"]
        assert got["distance_m"] == pytest.approx(want["distance_m"], abs=0.11)
        assert got["gap_m"] == pytest.approx(want["gap_m"], abs=0.21)
        assert (got["finish_s"] is None) == (want["finish_s"] is None)
        if got["finish_s"] is not None:
            assert got["finish_s"] == pytest.approx(want["finish_s"], abs=0.11)
        # gap_s from the leader's bounded history (a point every 5-10 s).
        assert got["gap_s"] == pytest.approx(want["gap_s"], abs=0.3)
    if finish:
        assert any(r["status"] == "finished" for r in live)
        assert any(r["status"] != "finished" for r in live)
