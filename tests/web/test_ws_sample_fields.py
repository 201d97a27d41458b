"""A refused sample on the socket is named as the client sent it: ``samples[1].t`` in the
samples form, ``timestamp`` / ``metrics.<name>`` in the spec's device form."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"samples": [{"t": 0.0, "heart_rate": 120}]}, "samples[0].t"),
        ({"samples": [{"t": "soon", "heart_rate": 120}]}, "samples[0].t"),
        ({"samples": [{"t": "NOW", "heart_rate": 120}, {"t": "NOW", "cadence": -3}]},
         "samples[1].cadence"),
        ({"timestamp": "2001-01-01T00:00:00Z", "metrics": {"heart_rate": 120}}, "timestamp"),
        ({"timestamp": "NOW", "metrics": {"heart_rate": 999}}, "metrics.heart_rate"),
        ({"timestamp": "NOW", "metrics": {"pace": 0.01}}, "metrics.pace"),
        ({"timestamp": "NOW", "metrics": {"power": -5}}, "metrics.power"),
    ],
)  # fmt: skip
async def test_the_error_names_the_field_as_sent(
    edge: Any, next_of: Any, body: dict[str, Any], field: str
) -> None:
    sid = await edge.start_session()
    ws = await edge.ws()
    now = time.time()
    if body.get("timestamp") == "NOW":
        body = {**body, "timestamp": now}
    body = {
        **body,
        "samples": [{**s, "t": now if s["t"] == "NOW" else s["t"]} for s in body.get("samples", [])]
        or None,
    }
    frame = {"type": "metrics_update", "id": 7, "session_id": sid, **body}
    if frame["samples"] is None:
        del frame["samples"]
    await ws.send_json(frame)
    error = await next_of(ws, "error")
    assert error["errors"][0]["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    await ws.close()
