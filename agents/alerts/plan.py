"""A structured workout: intervals with a duration or a distance and target ranges.

"Falling behind target" needs a target. A session may carry a plan (session metadata,
key ``plan``); the zone rules then follow the current interval's targets, with a grace
period at each change, and fall back to the athlete's configured bounds in intervals
without a target of their kind and in sessions without a plan.

Three ways in, all ending in :class:`WorkoutPlan`:

- our JSON document (:meth:`WorkoutPlan.model_validate`)::

      {"name": "3x8 threshold", "intervals": [
        {"name": "warm-up", "duration_s": 600, "power_w": {"low": 140, "high": 190}},
        {"name": "rep 1", "duration_s": 480, "power_w": {"low": 250, "high": 270}},
        {"name": "easy", "distance_m": 1000, "pace_s_per_km": {"low": 330, "high": 360}}]}

- Zwift's ZWO (:func:`from_zwo`): ``SteadyState``, ``Warmup``, ``Cooldown``, ``Ramp``,
  ``IntervalsT``, ``FreeRide``/``MaxEffort`` (no target), powers as fractions of FTP;
- ERG and MRC course files (:func:`from_erg`, :func:`from_mrc`): ``[COURSE DATA]``
  rows of minutes and watts (ERG) or percent of FTP (MRC); equal values make a steady
  interval, different ones a ramp.

A single target value (a ZWO ``Power``, an ERG row) becomes a range of
``± tolerance`` (default 5 %); a ramp's range spans its start and end. Every parse
error is a :class:`PlanError` naming where it is (``intervals.2.duration_s``,
``ZWO element 3 (SteadyState): Duration``, ``ERG line 14``).

At run time the plan is flattened into :class:`PlanTable` rows (plain lists, cheap to
keep in the alert state) and walked by :func:`advance`.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Interval",
    "PlanError",
    "Range",
    "WorkoutPlan",
    "advance",
    "current_interval",
    "from_erg",
    "from_mrc",
    "from_zwo",
    "parse_plan",
    "plan_rows",
]

#: A single target value becomes value ± this fraction.
DEFAULT_TOLERANCE = 0.05
_MAX_INTERVALS = 1000
_MAX_TEXT = 1_000_000


class PlanError(ValueError):
    """A plan that cannot be used; the message names the field, element or line."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Model):
    """A target range, in the metric's unit (W, s/km, bpm); ``low <= high``."""

    low: Annotated[float, Field(ge=0)]
    high: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) must not be above high ({self.high:g})")
        return self


class Interval(_Model):
    """One step of the plan: a duration or a distance, and up to three targets."""

    name: Annotated[str, Field(max_length=80)] = ""
    duration_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    distance_m: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    power_w: Range | None = None
    #: Pace range in s/km: ``low`` is the faster bound, ``high`` the slower.
    pace_s_per_km: Range | None = None
    heart_rate_bpm: Range | None = None

    @model_validator(mode="after")
    def _one_length(self) -> Interval:
        if (self.duration_s is None) == (self.distance_m is None):
            raise ValueError("give exactly one of duration_s and distance_m")
        return self


class WorkoutPlan(_Model):
    """A structured workout (the ``plan`` of a session's metadata)."""

    name: Annotated[str, Field(max_length=200)] = ""
    intervals: Annotated[list[Interval], Field(min_length=1, max_length=_MAX_INTERVALS)]
    #: After an interval change, power and pace are not judged for this long (the
    #: athlete changes effort; a trainer in ERG mode ramps).
    grace_s: Annotated[float, Field(ge=0, le=300)] = 5.0
    #: Heart rate follows a change of effort with a lag of a minute or two.
    hr_grace_s: Annotated[float, Field(ge=0, le=600)] = 90.0


def _range(value: float, tolerance: float) -> Range:
    return Range(low=round(value * (1 - tolerance), 1), high=round(value * (1 + tolerance), 1))


def _span(a: float, b: float, tolerance: float) -> Range:
    lo, hi = min(a, b), max(a, b)
    return Range(low=round(lo * (1 - tolerance), 1), high=round(hi * (1 + tolerance), 1))


def parse_plan(document: Any, ftp_w: float) -> WorkoutPlan:
    """A plan from session metadata: our JSON, or ``{"zwo"|"erg"|"mrc": "<file text>"}``.

    ``ftp_w`` converts the relative formats (ZWO, MRC); raises :class:`PlanError`.
    """
    if not isinstance(document, Mapping):
        raise PlanError("plan", f"expected an object, got {type(document).__name__}")
    formats = [key for key in ("zwo", "erg", "mrc") if key in document]
    if formats:
        key = formats[0]
        extra = set(document) - {key, "name"}
        if len(formats) > 1 or extra:
            raise PlanError(
                "plan", f"a {key} plan has only '{key}' and 'name', got {sorted(extra)}"
            )
        text = document[key]
        if not isinstance(text, str) or len(text) > _MAX_TEXT:
            raise PlanError(f"plan.{key}", "expected the file's text (at most 1 MB)")
        plan = {"zwo": from_zwo, "mrc": from_mrc}.get(key)
        parsed = plan(text, ftp_w) if plan is not None else from_erg(text)
        if isinstance(document.get("name"), str):
            parsed = parsed.model_copy(update={"name": document["name"][:200]})
        return parsed
    try:
        return WorkoutPlan.model_validate(dict(document))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(["plan", *(str(part) for part in err["loc"])])
        raise PlanError(where, err["msg"]) from None


def _attr(element: ET.Element, name: str, where: str, *, required: bool = True) -> float | None:
    raw = element.get(name)
    if raw is None:
        if required:
            raise PlanError(where, f"missing attribute {name}")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PlanError(where, f"{name} must be a number, got {raw!r}") from None
    if not value >= 0 or value > 1e6:
        raise PlanError(where, f"{name} out of range: {raw!r}")
    return value


def from_zwo(text: str, ftp_w: float, tolerance: float = DEFAULT_TOLERANCE) -> WorkoutPlan:
    """A Zwift workout file (``<workout_file>``); powers are fractions of FTP."""
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        # The standard library's parser expands internal entities: refuse them rather
        # than risk an entity bomb (ZWO files never use them).
        raise PlanError("ZWO", "DOCTYPE and ENTITY declarations are not allowed")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise PlanError("ZWO", f"not well-formed XML ({exc})") from None
    workout = root.find("workout")
    if root.tag != "workout_file" or workout is None:
        raise PlanError("ZWO", "expected <workout_file> with a <workout> element")
    name = (root.findtext("name") or "").strip()[:200]
    intervals: list[Interval] = []
    for i, el in enumerate(workout, start=1):
        where = f"ZWO element {i} ({el.tag})"
        tag = el.tag.lower()
        if tag in ("steadystate", "warmup", "cooldown", "ramp", "freeride", "maxeffort"):
            duration = _attr(el, "Duration", where)
            assert duration is not None
            if duration <= 0:
                raise PlanError(where, "Duration must be positive")
            target: Range | None = None
            if tag == "steadystate":
                power = _attr(el, "Power", where)
                assert power is not None
                target = _range(power * ftp_w, tolerance)
            elif tag in ("warmup", "cooldown", "ramp"):
                low = _attr(el, "PowerLow", where)
                high = _attr(el, "PowerHigh", where)
                assert low is not None and high is not None
                target = _span(low * ftp_w, high * ftp_w, tolerance)
            intervals.append(Interval(name=el.tag, duration_s=duration, power_w=target))
        elif tag == "intervalst":
            repeat = _attr(el, "Repeat", where)
            on_s = _attr(el, "OnDuration", where)
            off_s = _attr(el, "OffDuration", where)
            on_p = _attr(el, "OnPower", where)
            off_p = _attr(el, "OffPower", where)
            assert None not in (repeat, on_s, off_s, on_p, off_p)
            assert repeat is not None and on_s is not None and off_s is not None
            assert on_p is not None and off_p is not None
            if not 1 <= repeat <= 200 or on_s <= 0 or off_s <= 0:
                raise PlanError(where, "Repeat 1-200 and positive durations expected")
            for k in range(int(repeat)):
                on = Interval(
                    name=f"on {k + 1}", duration_s=on_s, power_w=_range(on_p * ftp_w, tolerance)
                )
                off = Interval(
                    name=f"off {k + 1}", duration_s=off_s, power_w=_range(off_p * ftp_w, tolerance)
                )
                intervals += [on, off]
        elif tag == "textevent":
            continue
        else:
            raise PlanError(where, "unknown element")
        if len(intervals) > _MAX_INTERVALS:
            raise PlanError(where, f"more than {_MAX_INTERVALS} intervals")
    if not intervals:
        raise PlanError("ZWO", "the workout has no intervals")
    return WorkoutPlan(name=name, intervals=intervals)


_ROW = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s+([0-9]+(?:\.[0-9]+)?)\s*$")


def _course_rows(text: str, fmt: str) -> tuple[str, list[tuple[float, float]]]:
    name = ""
    rows: list[tuple[float, float]] = []
    in_data = False
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        upper = stripped.upper()
        if not stripped or stripped.startswith(";"):
            continue
        if upper == "[COURSE DATA]":
            in_data = True
            continue
        if upper == "[END COURSE DATA]":
            in_data = False
            continue
        if stripped.startswith("["):
            in_data = False
            continue
        if not in_data:
            if upper.startswith("FILE NAME") or upper.startswith("DESCRIPTION"):
                name = name or stripped.split("=", 1)[-1].strip()[:200]
            continue
        match = _ROW.match(stripped)
        if match is None:
            raise PlanError(f"{fmt} line {n}", f"expected 'minutes value', got {stripped[:40]!r}")
        minute, value = float(match.group(1)), float(match.group(2))
        if rows and minute < rows[-1][0]:
            raise PlanError(f"{fmt} line {n}", "minutes must not go backwards")
        rows.append((minute, value))
    if len(rows) < 2:
        raise PlanError(fmt, "[COURSE DATA] needs at least two rows")
    return name, rows


def _from_course(text: str, fmt: str, scale: float, tolerance: float) -> WorkoutPlan:
    name, rows = _course_rows(text, fmt)
    intervals: list[Interval] = []
    for (m0, v0), (m1, v1) in itertools.pairwise(rows):
        if m1 == m0:
            continue  # a step: the next segment starts at the new value
        target = (
            _range(v0 * scale, tolerance) if v0 == v1 else _span(v0 * scale, v1 * scale, tolerance)
        )
        label = "steady" if v0 == v1 else "ramp"
        intervals.append(Interval(name=label, duration_s=(m1 - m0) * 60.0, power_w=target))
    if not intervals:
        raise PlanError(fmt, "no segment with a duration")
    if len(intervals) > _MAX_INTERVALS:
        raise PlanError(fmt, f"more than {_MAX_INTERVALS} intervals")
    return WorkoutPlan(name=name, intervals=intervals)


def from_erg(text: str, tolerance: float = DEFAULT_TOLERANCE) -> WorkoutPlan:
    """An ERG course file: ``[COURSE DATA]`` rows of minutes and watts."""
    return _from_course(text, "ERG", 1.0, tolerance)


def from_mrc(text: str, ftp_w: float, tolerance: float = DEFAULT_TOLERANCE) -> WorkoutPlan:
    """An MRC course file: ``[COURSE DATA]`` rows of minutes and percent of FTP."""
    return _from_course(text, "MRC", ftp_w / 100.0, tolerance)


# --- run time -----------------------------------------------------------------------

#: A flattened interval: [duration_s or None, distance_m or None, power lo, hi,
#: pace lo, hi, hr lo, hi, name] (None where there is no target).
Row = list[Any]


def plan_rows(plan: WorkoutPlan) -> list[Row]:
    """The plan as plain JSON-able rows (kept in the alert state)."""
    rows: list[Row] = []
    for iv in plan.intervals:
        row: Row = [iv.duration_s, iv.distance_m]
        for target in (iv.power_w, iv.pace_s_per_km, iv.heart_rate_bpm):
            row += [None, None] if target is None else [target.low, target.high]
        row.append(iv.name)
        rows.append(row)
    return rows


def advance(cursor: list[Any], rows: list[Row], t: float, distance_m: float) -> bool:
    """Move ``cursor`` ([index, start_t, start_distance]) past finished intervals.

    Returns whether the interval changed. Past the last interval the index is
    ``len(rows)``: the plan is over and the athlete's own bounds apply again.
    """
    changed = False
    while cursor[0] < len(rows):
        row = rows[cursor[0]]
        if row[0] is not None:
            if t - cursor[1] < row[0]:
                break
            end_t, end_d = cursor[1] + row[0], distance_m
        else:
            if distance_m - cursor[2] < row[1]:
                break
            end_t, end_d = t, cursor[2] + row[1]
        cursor[0] += 1
        cursor[1] = end_t
        cursor[2] = end_d
        changed = True
    return changed


def current_interval(
    rows: list[Row], cursor: list[Any], t: float, distance_m: float
) -> dict[str, Any] | None:
    """The dashboard's view of the current interval (None once the plan is over)."""
    index = cursor[0]
    if index >= len(rows):
        return None
    row = rows[index]
    target: dict[str, list[float]] = {}
    for key, lo in (("power_w", 2), ("pace_s_per_km", 4), ("heart_rate_bpm", 6)):
        if row[lo] is not None:
            target[key] = [row[lo], row[lo + 1]]
    out: dict[str, Any] = {"index": index, "count": len(rows), "name": row[8], "target": target}
    if row[0] is not None:
        out["remaining_s"] = round(max(0.0, cursor[1] + row[0] - t), 1)
    else:
        out["remaining_m"] = round(max(0.0, cursor[2] + row[1] - distance_m), 1)
    return out
