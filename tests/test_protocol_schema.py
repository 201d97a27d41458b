"""The wire protocol models, and the checked-in JSON Schema generated from them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from agents.session_metrics import SessionMetrics
from pipeline.models import (
    ClientMetricsUpdateFrame,
    LiveMetrics,
    MetricsUpdateEvent,
    client_frame,
    protocol_json_schema,
    render_protocol_schema,
    server_event,
)
from pipeline.models import Sample as SampleModel
from schema import PROTOCOL_SCHEMA

T = 1_767_225_600.0


def test_checked_in_schema_is_up_to_date() -> None:
    assert PROTOCOL_SCHEMA.read_text(encoding="utf-8") == render_protocol_schema(), (
        "schema/protocol.schema.json is out of date: run `python -m pipeline.models`"
    )


def test_schema_names_every_message_type() -> None:
    schema = protocol_json_schema()
    server = schema["$defs"]["ServerEvent"]["discriminator"]["mapping"]
    client = schema["$defs"]["ClientFrame"]["discriminator"]["mapping"]
    assert set(server) == {
        "metrics_update", "alert", "message", "session_event", "typing", "read_receipt",
        "presence", "ack", "error", "welcome", "resumed", "pong",
    }  # fmt: skip
    assert set(client) == {
        "auth", "subscribe", "unsubscribe", "resume", "metrics_update", "message",
        "typing", "read", "ack_alert", "ping",
    }  # fmt: skip
    # Every $ref resolves inside the document.
    text = json.dumps(schema)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}:
        assert ref in schema["$defs"], ref


def test_snapshot_fields_are_all_declared() -> None:
    metrics = SessionMetrics(1)
    metrics.add_sample(SampleModel(session_id=1, t=T, heart_rate=120, power_w=200))
    snapshot = metrics.snapshot()
    declared = {f.alias or name for name, f in LiveMetrics.model_fields.items()}
    assert set(snapshot) <= declared, set(snapshot) - declared
    event = server_event.validate_python(
        {"type": "metrics_update", "session_id": 1, "timestamp": T, "metrics": snapshot}
    )
    assert isinstance(event, MetricsUpdateEvent)
    dumped = event.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["metrics"]["if"] == pytest.approx(0.8)


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "alert", "timestamp": T, "session_id": 3, "channel": "live:session:3",
            "offset": "0:17",
            "alert": {
                "id": "a1", "rule": "hr_zone", "severity": "warning", "message": "HR high",
                "metric": "heart_rate", "current": 182, "threshold": 175, "sound": True,
                "vibration": False,
            },
        },
        {"type": "message", "timestamp": T, "message": {"id": 5, "from": 9, "text": "hi"}},
        {"type": "resumed", "timestamp": T, "channel": "live:user:2", "recovered": False,
         "snapshot": {"metrics": {}}},
        {"type": "session_event", "timestamp": T, "event": "stop", "state": "stopped"},
        {"type": "pong", "timestamp": T, "ref": "p1"},
    ],
)  # fmt: skip
def test_server_events_validate(event: dict[str, Any]) -> None:
    server_event.validate_python(event)


def test_client_metrics_update_batch_to_samples() -> None:
    frame = client_frame.validate_python(
        {
            "type": "metrics_update",
            "session_id": 4,
            "samples": [{"t": T, "heart_rate": 140}, {"t": T + 1, "power_w": 250, "seq": 2}],
        }
    )
    assert isinstance(frame, ClientMetricsUpdateFrame)
    samples = frame.to_samples()
    assert [s.session_id for s in samples] == [4, 4]
    assert samples[1].idempotency_key == "4:2"


def test_client_metrics_update_single_reading() -> None:
    frame = ClientMetricsUpdateFrame.model_validate(
        {"type": "metrics_update", "session_id": 4, "t": T, "metrics": {"heart_rate": 300}}
    )
    with pytest.raises(ValidationError, match="heart_rate\n  Input should be less than"):
        frame.to_samples()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": "shout"}, "does not match any of the expected tags"),
        ({"type": "subscribe", "chanel": "live:session:1"}, "chanel\n  Extra inputs"),
        ({"type": "subscribe", "channel": "session:1"}, "String should match pattern"),
        ({"type": "resume", "cursors": {"live:session:1": "x"}}, "String should match pattern"),
        ({"type": "message", "session_id": 1, "text": ""}, "at least 1 character"),
        ({"type": "auth"}, "token\n  Field required"),
        ({"type": "metrics_update", "session_id": 1, "samples": [{"t": T, "hr": 1}]},
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
        {"type": "resumed", "channel": "live:session:1", "recovered": True, "replayed": 3,
         "cursor": ["0:41"]}
    )  # fmt: skip
