"""The live agent's per-record logic, without Faust (pure unit tests)."""

from __future__ import annotations

import itertools

import pytest

from agents.processing import Processor
from agents.summary import summarise
from pipeline.recordings import read_recording, shared_recordings_dir
from tests.ids import sid, uid

S7, U3 = sid(7), sid(3)

RECORDINGS = shared_recordings_dir()
INDOOR = RECORDINGS / "indoor_2x10_intervals_power_hr__sample-activity-indoor-trainer.fit"


def _control(action: str, at_s: float, **payload: object) -> dict[str, object]:
    return {
        "kind": "control",
        "session_id": S7,
        "user_id": U3,
        "ingest_ms": 1,
        "action": action,
        "at_ms": int(at_s * 1000),
        "payload": payload,
    }


def _batch(samples: list[dict[str, object]]) -> dict[str, object]:
    return {"kind": "samples", "session_id": S7, "user_id": U3, "ingest_ms": 2, "samples": samples}


@pytest.fixture(scope="module")
def indoor() -> list[dict[str, object]]:
    if not INDOOR.exists():
        pytest.skip(f"recording not found: {INDOOR}")
    return [s.model_dump(mode="json") for s in read_recording(INDOOR, session_id=uid(7)).samples]


def test_a_replayed_recording_matches_the_pure_summary(indoor: list[dict[str, object]]) -> None:
    processor = Processor()
    t0 = float(indoor[0]["t"])  # type: ignore[arg-type]
    out = processor.process(None, _control("start", t0, profile={"ftp_w": 250}))
    state = out.state
    events = list(out.events)
    for i in range(0, len(indoor), 100):
        out = processor.process(state, _batch(indoor[i : i + 100]))
        state = out.state
        events += out.events
    t_end = float(indoor[-1]["t"]) + 1  # type: ignore[arg-type]
    out = processor.process(state, _control("stop", t_end))
    events += out.events

    updates = [e for e in events if e["type"] == "metrics_update"]
    times = [e["timestamp"] for e in updates]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    # One update per record (batches of 100), each with the state after its last sample.
    assert times == [
        float(indoor[min(i + 99, len(indoor) - 1)]["t"])  # type: ignore[arg-type]
        for i in range(0, len(indoor), 100)
    ]
    for e in updates:
        assert e["session_id"] == S7 and e["user_id"] == U3
        assert {"heart_rate", "pace", "distance", "cadence", "power"} <= e["metrics"].keys()

    stop = events[-1]
    assert stop["type"] == "session_event" and stop["event"] == "stop"
    reference = summarise(read_recording(INDOOR, session_id=uid(7)).samples)
    for key in ("samples", "mean_hr", "max_hr", "mean_power", "np", "decoupling_pct"):
        assert stop["summary"][key] == pytest.approx(reference[key]), key


def test_a_1_hz_device_gets_one_update_per_sample() -> None:
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600)).state
    updates = 0
    for i in range(30):
        sample = {"session_id": S7, "t": 1_767_261_600 + i, "heart_rate": 150.0}
        out = processor.process(state, _batch([sample]))
        state = out.state
        updates += sum(e["type"] == "metrics_update" for e in out.events)
    assert updates == 30
    # Twice a second: at most one update per second of sample time.
    for i in range(20):
        sample = {"session_id": S7, "t": 1_767_261_700 + i / 2, "heart_rate": 150.0}
        out = processor.process(state, _batch([sample]))
        state = out.state
        updates += sum(e["type"] == "metrics_update" for e in out.events)
    assert updates == 30 + 10


def test_replaying_a_batch_changes_nothing(indoor: list[dict[str, object]]) -> None:
    processor = Processor()
    state = processor.process(None, _batch(indoor[:50])).state
    before = state["metrics"]["totals"]
    again = processor.process(state, _batch(indoor[:50]))
    assert again.state["metrics"]["totals"] == before
    assert not [e for e in again.events if e["type"] == "metrics_update"]


def test_an_impossible_lifecycle_action_is_rejected_not_fatal() -> None:
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600)).state
    out = processor.process(state, _control("resume", 1_767_261_601))
    assert out.events[-1]["event"] == "rejected"
    assert "cannot resume a running session" in out.events[-1]["reason"]
    assert out.state["metrics"]["state"] == "running"


def test_a_profile_change_reaches_the_alert_rules() -> None:
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600)).state
    alerts = {"rules": {"heart_rate": {"enabled": True, "high_bpm": 150, "dwell_s": 5}}}
    out = processor.process(state, _control("profile", 1_767_261_601, alerts=alerts))
    assert out.state["alert_config"]["rules"]["heart_rate"]["high_bpm"] == 150
    samples = [{"session_id": S7, "t": 1_767_261_602 + i, "heart_rate": 170.0} for i in range(90)]
    fired = [
        e for e in processor.process(out.state, _batch(samples)).events if e["type"] == "alert"
    ]
    assert len(fired) == 1 and fired[0]["alert"]["rule"] == "heart_rate"


def test_a_plan_in_the_start_metadata_sets_targets_and_shows_the_interval() -> None:
    processor = Processor()
    plan = {
        "intervals": [
            {"name": "easy", "duration_s": 120, "power_w": {"low": 100, "high": 160}},
            {"name": "rep", "duration_s": 300, "power_w": {"low": 247, "high": 273}},
        ]
    }
    t0 = 1_767_261_600
    state = processor.process(None, _control("start", t0, metadata={"plan": plan})).state
    # Easy as planned, then the rep ridden at 200 W: under its target, not the easy one's.
    samples = [
        {"session_id": S7, "t": t0 + 1 + i, "power_w": 130.0 if i < 120 else 200.0, "cadence": 85}
        for i in range(240)
    ]
    out = processor.process(state, _batch(samples))
    alerts = [e["alert"] for e in out.events if e["type"] == "alert"]
    assert [(a["rule"], a["direction"]) for a in alerts] == [("power", "low")]
    assert alerts[0]["threshold"] == 247
    updates = [e["metrics"] for e in out.events if e["type"] == "metrics_update"]
    interval = updates[-1]["interval"]
    assert interval["name"] == "rep" and interval["target"] == {"power_w": [247, 273]}
    assert 0 < interval["remaining_s"] < 300


def test_samples_after_stop_are_counted_and_ignored() -> None:
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600)).state
    samples = [{"session_id": S7, "t": 1_767_261_601 + i, "heart_rate": 150.0} for i in range(5)]
    state = processor.process(state, _batch(samples)).state
    stop = processor.process(state, _control("stop", 1_767_261_610))
    late = [{"session_id": S7, "t": 1_767_261_620 + i, "heart_rate": 190.0} for i in range(5)]
    out = processor.process(stop.state, _batch(late))
    assert not [e for e in out.events if e["type"] in ("metrics_update", "alert")]
    assert out.state["metrics"]["ignored"]["stopped"] == 5
    assert out.state["metrics"]["totals"] == stop.state["metrics"]["totals"]


def test_samples_of_a_session_never_started_start_it() -> None:
    processor = Processor()
    samples = [{"session_id": S7, "t": 1_767_261_601 + i, "heart_rate": 150.0} for i in range(3)]
    out = processor.process(None, _batch(samples))
    assert out.state["metrics"]["state"] == "running"
    assert [e["type"] for e in out.events] == ["metrics_update"]


def test_the_start_record_carries_the_profile_row_and_its_alert_settings() -> None:
    processor = Processor()
    row = {"user_id": U3, "hr_max": 185, "lthr": 165, "ftp_w": 300, "sound": False,
           "vibration": True, "alert_settings": {"rules": {"heart_rate": {"high_bpm": 160}}},
           "updated_at": "2026-11-25T10:00:00"}  # fmt: skip
    state = processor.process(None, _control("start", 1_767_261_600, profile=row)).state
    assert state["metrics"]["profile"]["ftp_w"] == 300
    assert state["alert_config"]["rules"]["heart_rate"]["high_bpm"] == 160
    assert state["alert_config"]["delivery"] == {"sound": False, "vibration": True}
    samples = [{"session_id": S7, "t": 1_767_261_601 + i, "heart_rate": 175.0} for i in range(120)]
    alerts = [e["alert"] for e in processor.process(state, _batch(samples)).events
              if e["type"] == "alert"]  # fmt: skip
    assert alerts and alerts[0]["sound"] is False and alerts[0]["vibration"] is True


def _samples(first_s: int, count: int) -> list[dict[str, object]]:
    return [
        {
            "session_id": S7,
            "t": 1_767_261_600 + first_s + i,
            "heart_rate": 140.0,
            "seq": first_s + i,
        }
        for i in range(count)
    ]


def test_a_replay_after_a_crash_is_not_counted_as_ignored_input() -> None:
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600), offset=0).state
    state = processor.process(state, _batch(_samples(1, 5)), offset=1).state
    state = processor.process(state, _control("stop", 1_767_261_610), offset=2).state
    # The worker crashed before committing: it reads offsets 0-2 again.
    for offset, record in enumerate(
        [_control("start", 1_767_261_600), _batch(_samples(1, 5)), _control("stop", 1_767_261_610)]
    ):
        out = processor.process(state, record, offset=offset)
        # No "rejected" stop, no metrics for samples the state holds; the start is
        # published again as before (its id repeats, and the edge drops it).
        assert [e["event"] for e in out.events] in ([], ["start"])
        state = out.state
    assert state["metrics"]["ignored"] == {
        "duplicate": 0,
        "out_of_order": 0,
        "paused": 0,
        "stopped": 0,
    }


def test_a_device_repeating_a_sample_is_still_counted() -> None:
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600), offset=0).state
    state = processor.process(state, _batch(_samples(1, 5)), offset=1).state
    # The device sent the same samples again: a new record, a new offset.
    state = processor.process(state, _batch(_samples(1, 5)), offset=2).state
    assert (
        state["metrics"]["ignored"]["duplicate"] + state["metrics"]["ignored"]["out_of_order"] == 5
    )
    state = processor.process(state, _control("stop", 1_767_261_610), offset=3).state
    out = processor.process(state, _control("stop", 1_767_261_611), offset=4)
    assert out.events[-1]["event"] == "rejected"


def test_a_replayed_offset_with_new_samples_is_applied() -> None:
    # Offsets reused after Redis lost its tail: the samples are new to the state.
    processor = Processor()
    state = processor.process(None, _control("start", 1_767_261_600), offset=0).state
    state = processor.process(state, _batch(_samples(1, 5)), offset=1).state
    out = processor.process(state, _batch(_samples(6, 5)), offset=1)
    metrics = processor.snapshot(7, out.state)["metrics"]
    assert metrics["last_t"] == 1_767_261_610
    assert metrics["ignored"]["duplicate"] == 0
