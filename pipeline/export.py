"""A session's per-second table written as CSV, Parquet or FIT.

The rows come from :func:`agents.replay_series.series` (samples plus derived
metrics); this module only knows the columns and the formats:

- CSV: a header line, ``t`` as ISO 8601 UTC, empty cells for missing values.
- Parquet (pyarrow): typed columns (:data:`COLUMNS`): ``t`` a UTC timestamp in
  milliseconds, measurements float64, zones strings, ``lap`` int32.
- FIT (fit-tool, a maintained writer): an activity file an athlete can upload
  elsewhere: file id, timer start, one record per sample, a lap, the session (with
  its mean HR, mean power and NP), the activity, timer stop. FIT keeps heart rate,
  power and cadence as whole numbers (rounded here), distance to the centimetre and
  speed to the millimetre per second.

pyarrow and fit-tool are the ``analysis`` extra; a missing one is reported in one line.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError

Format = Literal["csv", "parquet", "fit"]
ColumnType = Literal["time", "float", "int", "str"]

#: Every exported column with its type (the Parquet schema; CSV and FIT follow it).
COLUMNS: dict[str, ColumnType] = {
    "t": "time",
    "heart_rate": "float",
    "power_w": "float",
    "speed_m_s": "float",
    "cadence": "float",
    "distance_m": "float",
    "altitude_m": "float",
    "pace": "float",
    "power_3s": "float",
    "hr_avg_30s": "float",
    "np": "float",
    "if": "float",
    "tss": "float",
    "w_prime_bal_j": "float",
    "w_prime_bal_pct": "float",
    "trimp": "float",
    "hr_zone": "str",
    "power_zone": "str",
    "pace_zone": "str",
    "lap": "int",
    "elapsed_s": "float",
    "alert_ids": "str",
}


def optional(module: str) -> Any:
    """Import a module of the ``analysis`` extra, or fail in one line saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            "analysis", f"{module} is missing: pip install 'livecoach[analysis]'"
        ) from None


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(
            ("" if row.get(c) is None else _iso(row[c]) if kind == "time" else row[c])
            for c, kind in COLUMNS.items()
        )
    return buffer.getvalue().encode()


def to_parquet(rows: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> bytes:
    pa = optional("pyarrow")
    pq = optional("pyarrow.parquet")
    types = {"time": pa.timestamp("ms", tz="UTC"), "float": pa.float64(),
             "int": pa.int32(), "str": pa.string()}  # fmt: skip
    schema = pa.schema([pa.field(c, types[kind]) for c, kind in COLUMNS.items()],
                       metadata=metadata)  # fmt: skip
    arrays = []
    for c, kind in COLUMNS.items():
        values = [row.get(c) for row in rows]
        if kind == "time":
            values = [None if v is None else round(v * 1000) for v in values]
        elif kind == "str":
            values = [v if v else None for v in values]
        arrays.append(pa.array(values, type=types[kind] if kind != "time" else pa.int64()))
    arrays[0] = arrays[0].cast(types["time"])
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buffer)
    return bytes(buffer.getvalue().to_pybytes())


def to_fit(rows: list[dict[str, Any]], summary: dict[str, Any], sport: str = "ride") -> bytes:
    optional("fit_tool")
    from fit_tool.fit_file_builder import FitFileBuilder
    from fit_tool.profile.messages.activity_message import ActivityMessage
    from fit_tool.profile.messages.event_message import EventMessage
    from fit_tool.profile.messages.file_id_message import FileIdMessage
    from fit_tool.profile.messages.lap_message import LapMessage
    from fit_tool.profile.messages.record_message import RecordMessage
    from fit_tool.profile.messages.session_message import SessionMessage
    from fit_tool.profile.profile_type import Event, EventType, FileType, Manufacturer, Sport

    if not rows:
        raise ValueError("a FIT activity needs at least one sample")
    start_ms = round(rows[0]["t"] * 1000)
    end_ms = round(rows[-1]["t"] * 1000)
    builder = FitFileBuilder(auto_define=True, min_string_size=50)
    file_id = FileIdMessage()
    file_id.type = FileType.ACTIVITY
    file_id.manufacturer = Manufacturer.DEVELOPMENT.value
    file_id.product = 0
    file_id.time_created = start_ms
    file_id.serial_number = 1
    builder.add(file_id)
    builder.add(_timer(EventMessage(), Event.TIMER, EventType.START, start_ms))
    for row in rows:
        record = RecordMessage()
        record.timestamp = round(row["t"] * 1000)
        if row.get("heart_rate") is not None:
            record.heart_rate = round(row["heart_rate"])
        if row.get("power_w") is not None:
            record.power = round(row["power_w"])
        if row.get("cadence") is not None:
            record.cadence = round(row["cadence"])
        if row.get("speed_m_s") is not None:
            record.speed = row["speed_m_s"]
        if row.get("distance_m") is not None:
            record.distance = row["distance_m"]
        if row.get("altitude_m") is not None:
            record.altitude = row["altitude_m"]
        builder.add(record)
    builder.add(_timer(EventMessage(), Event.TIMER, EventType.STOP_ALL, end_ms))
    elapsed_s = (end_ms - start_ms) / 1000.0
    fit_sport = Sport.RUNNING if sport == "run" else Sport.CYCLING
    for message in (LapMessage(), SessionMessage()):
        message.timestamp = end_ms
        message.start_time = start_ms
        message.total_elapsed_time = elapsed_s
        message.total_timer_time = float(summary.get("duration_s") or elapsed_s)
        message.sport = fit_sport
        _set_rounded(message, "avg_heart_rate", summary.get("mean_hr"))
        _set_rounded(message, "max_heart_rate", summary.get("max_hr"))
        _set_rounded(message, "avg_power", summary.get("mean_power"))
        _set_rounded(message, "max_power", summary.get("max_power"))
        _set_rounded(message, "normalized_power", summary.get("np"))
        if summary.get("distance_m") is not None:
            message.total_distance = float(summary["distance_m"])
        builder.add(message)
    activity = ActivityMessage()
    activity.timestamp = end_ms
    activity.total_timer_time = elapsed_s
    activity.num_sessions = 1
    builder.add(activity)
    data: bytes = builder.build().to_bytes()
    return data


def _timer(message: Any, event: Any, kind: Any, at_ms: int) -> Any:
    message.event = event
    message.event_type = kind
    message.timestamp = at_ms
    return message


def _set_rounded(message: Any, name: str, value: Any) -> None:
    if isinstance(value, int | float):
        setattr(message, name, round(value))


def write(fmt: Format, path: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    if fmt == "csv":
        data = to_csv(rows)
    elif fmt == "parquet":
        data = to_parquet(rows, {"session_id": str(summary.get("session_id", ""))})
    else:
        data = to_fit(rows, summary, str(summary.get("sport") or "ride"))
    path.write_bytes(data)
