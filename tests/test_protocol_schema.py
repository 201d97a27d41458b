"""The wire protocol models, and the checked-in JSON Schema generated from them."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from agents.session_metrics import SessionMetrics
from pipeline.models import (
    ClientMetricsUpdateFrame,
    LiveMetrics,
    MetricsUpdateEvent,
    client_frame,
    iso_z,
    protocol_json_schema,
    render_protocol_schema,
    server_event,
)
from pipeline.models import Sample as SampleModel
from schema import PROTOCOL_SCHEMA
from tests import wire_check
from web.wire import to_wire

T = 1_767_225_600.0
TS = "2026-01-01T00:00:00.000Z"
SID = uuid.UUID("7b0c6a0e-36f4-4d3e-9a55-0c1f3c5e2d11")
COACH = uuid.UUID("3f6f0a51-8a8e-4b77-b1cf-59f6f3c2aa01")
MESSAGE_ID = uuid.UUID("c1d7a3c4-0c86-4a0e-9f3b-6b1a64b4f9e2")
ALERT_ID = uuid.UUID("0d3c0c35-55a1-4a57-9d1d-7c9f0b8f6a33")


def test_checked_in_schema_is_up_to_date() -> None:
    assert PROTOCOL_SCHEMA.read_text(encoding="utf-8") == render_protocol_schema(), (
        "schema/protocol.schema.json is out of date: run `python -m pipeline.models`"
    )


def test_schema_names_every_message_type() -> None:
    schema = protocol_json_schema()
    server = schema["$defs"]["ServerEvent"]["discriminator"]["mapping"]
    client = schema["$defs"]["ClientFrame"]["discriminator"]["mapping"]
    assert set(server) == {
        "metrics_update", "alert", "message", "session_event", "leaderboard", "typing",
        "read_receipt", "presence", "ack", "error", "welcome", "resumed", "pong",
    }  # fmt: skip
    assert set(client) == {
        "auth", "subscribe", "unsubscribe", "resume", "metrics_update", "message",
        "typing", "read", "ack_alert", "lap", "ping",
    }  # fmt: skip
    # Every $ref resolves inside the document.
    text = json.dumps(schema)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}:
        assert ref in schema["$defs"], ref


def test_snapshot_fields_are_all_declared() -> None:
    metrics = SessionMetrics(str(SID))
    metrics.add_sample(SampleModel(session_id=SID, t=T, heart_rate=120, power_w=200))
    snapshot = metrics.snapshot()
    declared = {f.alias or name for name, f in LiveMetrics.model_fields.items()}
    assert set(snapshot) <= declared, set(snapshot) - declared
    event = to_wire(
        {"type": "metrics_update", "session_id": str(SID), "timestamp": T, "metrics": snapshot}
    )
    assert wire_check.errors_of(event) == []
    parsed = server_event.validate_python(event)
    assert isinstance(parsed, MetricsUpdateEvent)
    dumped = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["metrics"]["if"] == pytest.approx(0.8)


def test_the_wire_has_iso_times_and_the_spec_units() -> None:
    """The agents' units (epoch s, s/km, m) become the spec's (ISO, min/km, km)."""
    event = to_wire(
        {
            "type": "metrics_update",
            "session_id": str(SID),
            "timestamp": 1_759_233_600.25,
            "metrics": {"heart_rate": 150, "pace": 330.0, "distance": 3200.0, "cadence": 180},
        }
    )
    assert event["timestamp"] == "2025-09-30T12:00:00.250Z"
    assert event["metrics"]["pace"] == pytest.approx(5.5)  # 5:30 per km
    assert event["metrics"]["distance"] == pytest.approx(3.2)
    assert (event["metrics"]["pace_s_per_km"], event["metrics"]["distance_m"]) == (330.0, 3200.0)
    assert wire_check.errors_of(event) == []
    stopped = to_wire({"type": "metrics_update", "timestamp": T,
                       "metrics": {"heart_rate": None, "pace": None, "distance": None,
                                   "cadence": None}})  # fmt: skip
    assert stopped["metrics"]["pace"] is None and stopped["metrics"]["distance"] is None


#: The spec's three example messages, its placeholders replaced by real ids.
SPEC_DEVICE = {
    "type": "metrics_update", "session_id": str(SID), "timestamp": "2025-09-30T12:00:00Z",
    "metrics": {"heart_rate": 150, "pace": 5.5, "distance": 3.2, "cadence": 180},
}  # fmt: skip
SPEC_ALERT = {
    "type": "alert", "session_id": str(SID), "timestamp": "2025-09-30T12:00:00Z",
    "alert": {"id": str(ALERT_ID), "rule": "hr_zone", "severity": "warning",
              "message": "Heart rate above zone 4", "metric": "heart_rate", "current": 175,
              "threshold": 170},
}  # fmt: skip
SPEC_MESSAGE = {
    "type": "message", "session_id": str(SID), "timestamp": "2025-09-30T12:00:00Z",
    "message": {"from": str(COACH), "text": "Great pace, keep it up!", "id": str(MESSAGE_ID)},
}  # fmt: skip


def _validator(definition: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(PROTOCOL_SCHEMA.read_text(encoding="utf-8"))
    schema.pop("anyOf")
    schema["$ref"] = f"#/$defs/{definition}"
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_the_spec_examples_validate_against_the_checked_in_schema() -> None:
    _validator("ClientFrame").validate(SPEC_DEVICE)
    _validator("ServerEvent").validate(SPEC_ALERT)
    _validator("ServerEvent").validate(SPEC_MESSAGE)
    # ... and the validator is not a pushover: integer ids and epoch times are refused.
    for bad in (
        {**SPEC_ALERT, "session_id": 3},
        {**SPEC_ALERT, "timestamp": 1759233600},
        {**SPEC_MESSAGE, "message": {**SPEC_MESSAGE["message"], "from": "coach_id"}},
        {**SPEC_ALERT, "timestamp": "2025-09-30T12:00:00"},  # no zone
    ):
        assert list(_validator("ServerEvent").iter_errors(bad)), bad


def test_the_spec_device_example_means_what_it_says() -> None:
    frame = client_frame.validate_python(SPEC_DEVICE)
    assert isinstance(frame, ClientMetricsUpdateFrame)
    (sample,) = frame.to_samples(now_s=0.0)
    assert sample.session_id == SID
    assert sample.t == 1_759_233_600.0
    assert sample.speed_m_s == pytest.approx(1000 / 330)  # 5:30 per km
    assert sample.distance_m == pytest.approx(3200.0)
    assert (sample.heart_rate, sample.cadence) == (150, 180)


def test_the_schema_states_the_units() -> None:
    schema = json.loads(PROTOCOL_SCHEMA.read_text(encoding="utf-8"))
    live = schema["$defs"]["LiveMetrics"]["properties"]
    device = schema["$defs"]["SpecMetricsIn"]["properties"]
    for props in (live, device):
        assert "minutes per km" in props["pace"]["description"]
        assert "km" in props["distance"]["description"]
    assert live["pace_s_per_km"]["description"] == "seconds per km"


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "alert", "timestamp": TS, "session_id": str(SID),
            "channel": f"live:session:{SID}", "offset": "0:17",
            "alert": {
                "id": str(ALERT_ID), "rule": "hr_zone", "severity": "warning",
                "message": "HR high", "metric": "heart_rate", "current": 182, "threshold": 175,
                "sound": True, "vibration": False,
            },
        },
        {"type": "message", "timestamp": TS,
         "message": {"id": str(MESSAGE_ID), "from": str(COACH), "text": "hi"}},
        {"type": "resumed", "timestamp": TS, "channel": f"live:user:{COACH}", "recovered": False,
         "snapshot": {"metrics": {}}},
        {"type": "session_event", "timestamp": TS, "event": "stop", "state": "stopped"},
        {"type": "pong", "timestamp": TS, "ref": "p1"},
    ],
)  # fmt: skip
def test_server_events_validate(event: dict[str, Any]) -> None:
    server_event.validate_python(event)
    assert wire_check.errors_of(event) == []


def test_client_metrics_update_batch_to_samples() -> None:
    frame = client_frame.validate_python(
        {
            "type": "metrics_update",
            "session_id": str(SID),
            "samples": [{"t": T, "heart_rate": 140}, {"t": T + 1, "power_w": 250, "seq": 2}],
        }
    )
    assert isinstance(frame, ClientMetricsUpdateFrame)
    samples = frame.to_samples(now_s=T)
    assert [s.session_id for s in samples] == [SID, SID]
    assert samples[1].idempotency_key == f"{SID}:2"


def test_client_metrics_update_single_reading() -> None:
    frame = ClientMetricsUpdateFrame.model_validate(
        {"type": "metrics_update", "session_id": str(SID), "t": T, "metrics": {"heart_rate": 300}}
    )
    with pytest.raises(ValidationError, match="heart_rate\n  Input should be less than"):
        frame.to_samples(now_s=T)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": "shout"}, "does not match any of the expected tags"),
        ({"type": "subscribe", "chanel": f"live:session:{SID}"}, "chanel\n  Extra inputs"),
        ({"type": "subscribe", "channel": "session:1"}, "String should match pattern"),
        ({"type": "subscribe", "channel": "live:session:1"}, "String should match pattern"),
        ({"type": "resume", "cursors": {f"live:session:{SID}": "x"}},
         "String should match pattern"),
        ({"type": "message", "session_id": str(SID), "text": ""}, "at least 1 character"),
        ({"type": "message", "session_id": 1, "text": "hi"}, "session_id\n  UUID input"),
        ({"type": "auth"}, "token\n  Field required"),
        ({"type": "metrics_update", "session_id": str(SID), "samples": [{"t": T, "hr": 1}]},
         "hr\n  Extra inputs are not permitted"),
        ({"type": "metrics_update", "session_id": str(SID), "metrics": {"hr": 1}},
         "hr\n  Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_client_frames_say_why(frame: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        client_frame.validate_python(frame)
    assert reason in str(info.value)


def test_edge_replies_without_timestamp_validate() -> None:
    # The edge's resumed and error frames carry no timestamp.
    server_event.validate_python({"type": "error", "code": "invalid", "message": "bad frame"})
    server_event.validate_python(
        {"type": "resumed", "channel": f"live:session:{SID}", "recovered": True, "replayed": 3,
         "cursor": ["0:41"]}
    )  # fmt: skip


def test_iso_z_is_datetime_isoformat_to_the_nearest_millisecond() -> None:
    rng = random.Random(13)
    times = [rng.uniform(946_684_800, 4_102_444_800) for _ in range(20_000)]
    times += [1_759_233_600.0, 1_759_233_600.9996, 1_759_233_599.9994, 951_782_400.5]  # 2000-02-29
    for t in times:
        expected = dt.datetime.fromtimestamp(round(t * 1000) / 1000, dt.UTC)
        assert iso_z(t) == expected.isoformat(timespec="milliseconds").replace("+00:00", "Z"), t
