"""Recorded workouts (FIT, GPX, TCX, CSV) read into validated :class:`Sample` lists.

Recordings feed ``livecoach analyze``, the demo athlete and the tests that check our
figures against the reference ones in ``data/recordings/LICENSES.txt``. Every record
goes through :class:`~pipeline.models.Sample`; a value the model rejects (a sensor
glitch such as a heart rate of 255 or a GPS jump) is dropped from that record and
counted in :attr:`Recording.dropped`, the rest of the record is kept. A record with no
usable time is skipped and counted too. A file that cannot be read at all raises
:class:`RecordingError` naming the file and the reason.

Formats:

- FIT (``fitdecode``): ``record`` messages; ``enhanced_speed``/``enhanced_altitude``
  preferred over the 16-bit fields.
- GPX (``gpxpy``): track points with Garmin's ``TrackPointExtension`` (``hr``,
  ``cad``) and a ``power`` element (Strava's export, or any namespace). GPX has no
  speed or distance: distance is the cumulative 2D distance between points and speed
  its derivative over the time since the previous point.
- TCX (``xml.etree``): ``Trackpoint`` with ``HeartRateBpm``, ``Cadence``,
  ``DistanceMeters``, ``AltitudeMeters`` and the ``TPX`` extension (``Speed``,
  ``Watts``, ``RunCadence``).
- CSV: a header with any subset of ``t,heart_rate,power,speed,cadence,distance``
  (plus ``altitude``); ``t`` is epoch seconds, an ISO 8601 time, or seconds from the
  start (values below the year 2000), which are placed at :data:`CSV_RELATIVE_EPOCH_S`.
  Empty cells are missing values.
"""

from __future__ import annotations

import csv
import os
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.errors import LivecoachError
from pipeline.models import EPOCH_MIN_S, OFFLINE_SESSION_ID, Sample, to_epoch_s

#: Where relative CSV times start: 2026-01-01T00:00:00Z.
CSV_RELATIVE_EPOCH_S = 1_767_225_600.0

CSV_COLUMNS = {
    "t": "t",
    "heart_rate": "heart_rate",
    "power": "power_w",
    "speed": "speed_m_s",
    "cadence": "cadence",
    "distance": "distance_m",
    "altitude": "altitude_m",
}

FORMATS = ("fit", "gpx", "tcx", "csv")

#: Where the team's shared reference recordings live: ``LIVECOACH_RECORDINGS_DIR``, else
#: ``shared/data/recordings`` beside the checkout (``../shared``). They are an extra:
#: tests and ``livecoach alerts-eval`` read them there when present (never copying them
#: into the project); recordings of our own come from :mod:`pipeline.sample_recordings`.
RECORDINGS_ENV = "LIVECOACH_RECORDINGS_DIR"
_BESIDE_THE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "recordings"


def shared_recordings_dir() -> Path:
    """The folder of the shared reference recordings (it may not exist)."""
    configured = os.environ.get(RECORDINGS_ENV)
    if configured:
        return Path(configured)
    return _BESIDE_THE_CHECKOUT


class RecordingError(LivecoachError):
    """A recording could not be read; the message names the file and why."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(slots=True)
class Recording:
    """The samples of one recording, oldest first as stored in the file."""

    path: Path
    format: str
    samples: list[Sample]
    #: Values rejected by the Sample model, by field name ("t" = whole record skipped).
    dropped: Counter[str] = field(default_factory=Counter)


def read_recording(
    path: str | Path, *, session_id: uuid.UUID = OFFLINE_SESSION_ID, format: str | None = None
) -> Recording:
    """Read a FIT, GPX, TCX or CSV file (by extension unless ``format`` is given)."""
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise RecordingError(
            path, f"unknown recording format {fmt!r}; expected one of {', '.join(FORMATS)}"
        )
    if not path.is_file():
        raise RecordingError(path, "no such file")
    readers = {"fit": _read_fit, "gpx": _read_gpx, "tcx": _read_tcx, "csv": _read_csv}
    recording = Recording(path=path, format=fmt, samples=[])
    try:
        rows = list(readers[fmt](path))
    except RecordingError:
        raise
    except Exception as exc:  # every parser has its own error tree; one message for all
        raise RecordingError(path, f"not a readable {fmt.upper()} file ({exc})") from exc
    for row in rows:
        sample = _validate(row, session_id, recording.dropped)
        if sample is not None:
            recording.samples.append(sample)
    if not recording.samples:
        raise RecordingError(path, f"no samples with a valid time in this {fmt.upper()} file")
    return recording


def _validate(row: dict[str, Any], session_id: uuid.UUID, dropped: Counter[str]) -> Sample | None:
    """A Sample from ``row``, dropping (and counting) the values the model rejects."""
    row["session_id"] = session_id
    for _ in range(2):
        try:
            return Sample.model_validate(row)
        except ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else "?"
                if name == "t" or name not in row:
                    dropped["t"] += 1
                    return None
                dropped[name] += 1
                del row[name]
    dropped["t"] += 1
    return None


# --- FIT -------------------------------------------------------------------------------

_FIT_FIELDS = {
    "timestamp": "t",
    "heart_rate": "heart_rate",
    "power": "power_w",
    "speed": "speed_m_s",
    "enhanced_speed": "speed_m_s",
    "cadence": "cadence",
    "distance": "distance_m",
    "altitude": "altitude_m",
    "enhanced_altitude": "altitude_m",
}
# The enhanced fields are 32-bit versions of the same quantity; they win when present.
_FIT_ENHANCED = {"enhanced_speed", "enhanced_altitude"}


#: FIT times are seconds since 1989-12-31T00:00:00Z; below 0x10000000 they are relative
#: to a device's power-on, not a time of day.
_FIT_EPOCH_S = 631_065_600
_FIT_MIN_ABSOLUTE = 0x10000000


def _read_fit(path: Path) -> Iterator[dict[str, Any]]:
    import fitdecode

    # No data processor: we convert the one field we need (timestamp) ourselves, which
    # makes parsing about a third faster. No CRC check: a device that died mid-write
    # leaves a bad CRC on a file whose records are fine, and the Sample model rejects
    # any garbage value anyway; a file that is not FIT at all still fails to parse.
    with fitdecode.FitReader(
        str(path),
        processor=None,
        check_crc=fitdecode.CrcCheck.DISABLED,
        keep_raw_chunks=False,
    ) as reader:
        for frame in reader:
            if frame.frame_type != fitdecode.FIT_FRAME_DATA or frame.name != "record":
                continue
            row: dict[str, Any] = {}
            enhanced: set[str] = set()
            for fld in frame.fields:
                key = _FIT_FIELDS.get(fld.name)
                if key is None or fld.value is None:
                    continue
                if fld.name in _FIT_ENHANCED:
                    enhanced.add(key)
                elif key in enhanced:
                    continue
                row[key] = fld.value
            timestamp = row.get("t")
            if isinstance(timestamp, int) and timestamp >= _FIT_MIN_ABSOLUTE:
                row["t"] = float(timestamp + _FIT_EPOCH_S)
                yield row
            else:
                # A relative or missing time: let the model reject and count the record.
                row["t"] = None
                yield row


# --- GPX -------------------------------------------------------------------------------


def _local(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rpartition("}")[2]


def _gpx_extensions(elements: Iterable[ET.Element], row: dict[str, Any]) -> None:
    for element in elements:
        for node in element.iter():
            name = _local(node.tag)
            text = node.text
            if text is None or not text.strip():
                continue
            if name == "hr":
                row["heart_rate"] = float(text)
            elif name == "cad":
                row["cadence"] = float(text)
            elif name in ("power", "PowerInWatts"):
                row["power_w"] = float(text)


def _read_gpx(path: Path) -> Iterator[dict[str, Any]]:
    import gpxpy

    with path.open(encoding="utf-8") as f:
        gpx = gpxpy.parse(f)
    distance_m = 0.0
    previous: Any = None
    previous_t: float | None = None
    for track in gpx.tracks:
        for segment in track.segments:
            for point in segment.points:
                if point.time is None:
                    continue
                t = point.time.timestamp()
                row: dict[str, Any] = {"t": t}
                if point.elevation is not None:
                    row["altitude_m"] = point.elevation
                if previous is not None and previous_t is not None:
                    step_m = point.distance_2d(previous) or 0.0
                    distance_m += step_m
                    if t > previous_t:
                        row["speed_m_s"] = step_m / (t - previous_t)
                row["distance_m"] = distance_m
                previous, previous_t = point, t
                _gpx_extensions(point.extensions, row)
                yield row


# --- TCX -------------------------------------------------------------------------------

_TCX = "{http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2}"


def _read_tcx(path: Path) -> Iterator[dict[str, Any]]:
    root = ET.parse(path).getroot()
    for point in root.iter(f"{_TCX}Trackpoint"):
        time = point.findtext(f"{_TCX}Time")
        if not time:
            continue
        row: dict[str, Any] = {"t": datetime.fromisoformat(time.strip())}
        for child in point:
            name = _local(child.tag)
            if name == "HeartRateBpm":
                value = child.findtext(f"{_TCX}Value")
                if value:
                    row["heart_rate"] = float(value)
            elif name == "DistanceMeters" and child.text:
                row["distance_m"] = float(child.text)
            elif name == "AltitudeMeters" and child.text:
                row["altitude_m"] = float(child.text)
            elif name == "Cadence" and child.text:
                row["cadence"] = float(child.text)
            elif name == "Extensions":
                for node in child.iter():
                    ext = _local(node.tag)
                    if not node.text or not node.text.strip():
                        continue
                    if ext == "Speed":
                        row["speed_m_s"] = float(node.text)
                    elif ext == "Watts":
                        row["power_w"] = float(node.text)
                    elif ext == "RunCadence":
                        row["cadence"] = float(node.text)
        yield row


# --- CSV -------------------------------------------------------------------------------


def _read_csv(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in reader.fieldnames or []]
        unknown = [name for name in header if name not in CSV_COLUMNS]
        if "t" not in header:
            raise RecordingError(path, f"CSV header has no 't' column (got {header})")
        if unknown:
            raise RecordingError(
                path,
                f"unknown CSV column(s) {unknown}; expected a subset of {list(CSV_COLUMNS)}",
            )
        reader.fieldnames = header
        for line in reader:
            row: dict[str, Any] = {}
            for name, text in line.items():
                if name is None or text is None or not text.strip():
                    continue
                key = CSV_COLUMNS[name]
                row[key] = text.strip() if key == "t" else _csv_number(text)
            if "t" not in row:
                continue
            t = to_epoch_s(row["t"])
            if isinstance(t, float) and t < EPOCH_MIN_S:
                t += CSV_RELATIVE_EPOCH_S
            row["t"] = t
            yield row


def _csv_number(text: str) -> float | str:
    # A cell that is not a number is passed on as text so that the model names the field.
    try:
        return float(text)
    except ValueError:
        return text.strip()
