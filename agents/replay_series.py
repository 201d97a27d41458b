"""A session second by second: its samples and the metrics the agents derive from them.

:func:`series` runs a session's records through :class:`agents.processing.Processor`
(the code inside the live agent, without Faust) one sample per record, so every
sample gets the ``metrics_update`` the agent would publish after it: zones, rolling
power, NP, W' balance, laps. Alerts are attached to the sample that fired them. This
feeds the exports and the plots; the Faust path (:mod:`agents.replay`) is what
certifies the numbers, and both run the same processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.processing import Processor
from agents.replay import Override, Record, Recorded

#: Derived columns copied from each metrics_update, in this order (see docs/replay.md).
DERIVED = (
    "pace", "power_3s", "hr_avg_30s", "np", "if", "tss", "w_prime_bal_j",
    "w_prime_bal_pct", "trimp", "hr_zone", "power_zone", "pace_zone", "lap", "elapsed_s",
)  # fmt: skip
#: Raw sample fields, in this order.
RAW = ("t", "heart_rate", "power_w", "speed_m_s", "cadence", "distance_m", "altitude_m")


@dataclass
class Series:
    session_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    laps: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    #: The zone bounds of the session (from the summary), for plots.
    zone_bounds: dict[str, list[float]] = field(default_factory=dict)


def _one_by_one(records: list[Record]) -> list[Record]:
    out: list[Record] = []
    for record in records:
        if record.get("kind") == "samples":
            out.extend({**record, "samples": [s]} for s in record.get("samples", []))
        else:
            out.append(record)
    return out


def series(session: Recorded, override: Override | None = None) -> Series:
    processor = Processor()
    state = None
    out = Series(session.session_id)
    records = _one_by_one([(override or Override()).apply(r) for r in session.records])
    for record in records:
        result = processor.process(state, record, snapshot=False)
        state = result.state
        sample = record["samples"][0] if record.get("kind") == "samples" else None
        derived: dict[str, Any] | None = None
        fired: list[str] = []
        for event in result.events:
            kind = event.get("type")
            if kind == "metrics_update":
                derived = event["metrics"]
            elif kind == "alert":
                out.alerts.append(event["alert"])
                fired.append(event["alert"]["id"])
            elif kind == "session_event" and event.get("event") == "lap":
                out.laps.append(event["lap"])
            elif kind == "session_event" and event.get("event") == "stop":
                out.summary = event.get("summary")
        if sample is None:
            continue
        row: dict[str, Any] = {name: sample.get(name) for name in RAW}
        if derived is None and out.rows:  # sub-second samples share the last update
            derived = {name: out.rows[-1].get(name) for name in DERIVED}
        for name in DERIVED:
            row[name] = (derived or {}).get(name)
        row["alert_ids"] = ",".join(fired)
        out.rows.append(row)
    if out.summary is not None:
        out.zone_bounds = dict(out.summary.get("zone_bounds") or {})
    return out
